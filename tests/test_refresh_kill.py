"""kill -9 of the refresh at points spread over every stage, against the real Label Studio server.

Two worlds share the same frames folder and Label Studio server:
- baseline: refresh -> annotators label the pushed tasks -> new frames arrive -> refresh;
- faulty: the same, but each refresh is killed (SIGKILL to its whole process group) again and
  again at random points inside a chosen stage, then finished by one clean rerun.
Afterwards both worlds must hold the same Label Studio tasks (no duplicates), the same
annotations and dataset versions with the same content checksums.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.labelstudio import annotate, region, unique_title

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"
BELTCURATE = str(Path(sys.executable).parent / "beltcurate")
STAGES = ("ingest", "score", "pull", "select", "push", "export", "report")
KILLS_PER_PHASE = 11  # >= 20 kills in all, every stage targeted at least twice
SEED = 20261129


def _env(world: Path, server, project: str, inbox: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELTCURATE_")}
    env.update({
        "BELTCURATE_STATE_DIR": str(world / "state"),
        "BELTCURATE_REFRESH_INPUTS": str(inbox),
        "BELTCURATE_MODEL_CHECKPOINT": str(CHECKPOINT),
        "BELTCURATE_SELECT_BUDGET": "8",
        "BELTCURATE_INGEST_WORKERS": "1",
        "BELTCURATE_LABELSTUDIO_URL": server.url,
        "BELTCURATE_LABELSTUDIO_TOKEN": server.token,
        "BELTCURATE_LABELSTUDIO_PROJECT": project,
        "BELTCURATE_LABELSTUDIO_IMAGE_ROOT": str(server.document_root),
        "BELTCURATE_LABELSTUDIO_CHUNK_SIZE": "3",  # several import calls: kills can land between them
        "OMP_WAIT_POLICY": "PASSIVE",
    })
    return env


def _catalog_path(world: Path) -> Path:
    return world / "state" / "catalog.sqlite"


def _running_stage(world: Path, after_run_id: int) -> str | None:
    """The stage the newest refresh run reports as running (read-only, while it runs)."""
    path = _catalog_path(world)
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT stages FROM runs WHERE command='refresh' AND id>? ORDER BY id DESC LIMIT 1",
                               (after_run_id,)).fetchone()
    except sqlite3.OperationalError:  # the schema is being created
        return None
    if not row or not row[0]:
        return None
    for name, stage in json.loads(row[0]).items():
        if stage.get("status") == "running":
            return name
    return None


def _last_run_id(world: Path) -> int:
    path = _catalog_path(world)
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _refresh(env: dict) -> dict:
    done = subprocess.run([BELTCURATE, "refresh", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _kill_during(world: Path, env: dict, stage: str, max_delay_s: float, rng: random.Random) -> str | None:
    """Start a refresh, SIGKILL it at a random moment inside ``stage``; the stage actually hit, or
    None when the run got through that stage (or finished) before the kill."""
    before = _last_run_id(world)
    proc = subprocess.Popen([BELTCURATE, "refresh", "--json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    hit = None
    while time.time() < deadline and proc.poll() is None:
        current = _running_stage(world, before)
        if current == stage:
            time.sleep(rng.uniform(0, max_delay_s))
            hit = _running_stage(world, before)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return hit if hit else stage
            return None
        if current is not None and STAGES.index(current) > STAGES.index(stage):
            break  # the target stage passed between two polls
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return current
    return None


def _annotate_pushed(server, project: str, gt_by_name: dict) -> int:
    """Label every task of the project that has no annotation yet, from the synthetic ground truth."""
    with server.client() as client:
        project_id = client.projects_titled(project)[0]["id"]
        tasks, _ = client.list_tasks(project_id, include="id,data,total_annotations")
        n = 0
        for task in sorted(tasks, key=lambda t: t["data"]["frame_id"]):
            if task.get("total_annotations"):
                continue
            name = Path(task["data"]["image"]).name
            width, height, boxes = gt_by_name[name]
            regions = [region(b["xywh_px"], b["label"], width, height, f"r{k}") for k, b in enumerate(boxes)]
            annotate(client, task["id"], regions, lead_time=10.0)
            n += 1
        return n


def _world_state(world: Path, server, project: str) -> dict:
    with sqlite3.connect(_catalog_path(world)) as conn:
        hash_of = dict(conn.execute("SELECT id, content_hash FROM frames"))
        annotations = sorted(
            (hash_of[fid], status, boxes) for fid, status, boxes in
            conn.execute("SELECT frame_id, status, boxes FROM annotations WHERE is_current")
        )
        versions = [(name, n_frames, n_boxes, path) for name, n_frames, n_boxes, path in
                    conn.execute("SELECT name, n_frames, n_boxes, path FROM dataset_versions ORDER BY id")]
        tasks_in_catalog = conn.execute("SELECT COUNT(*) FROM label_tasks").fetchone()[0]
    with server.client() as client:
        project_id = client.projects_titled(project)[0]["id"]
        tasks, _ = client.list_tasks(project_id, include="id,data")
    frame_ids = [t["data"]["frame_id"] for t in tasks]
    manifests = []
    for name, n_frames, n_boxes, path in versions:
        manifest = json.loads((Path(path) / "manifest.json").read_text())
        manifests.append((name, n_frames, n_boxes, manifest["files"]))
    return {
        "task_frames": sorted(hash_of[f] for f in frame_ids),
        "duplicate_tasks": len(frame_ids) - len(set(frame_ids)),
        "tasks_in_catalog": tasks_in_catalog,
        "annotations": annotations,
        "versions": manifests,
    }


def test_kill_anywhere_then_rerun_equals_uninterrupted(labelstudio_server, synth_small, tmp_path):
    server = labelstudio_server
    rng = random.Random(SEED)
    frames = server.frames_dir("refresh-kill")
    # the belt delivers frames in two weeks: most sequences now, the rest before the second refresh
    images = sorted((synth_small / "images").rglob("*.jpg"))[:64]
    inbox = frames / "inbox"
    week2 = images[48:]
    for path in images[:48]:
        target = inbox / path.relative_to(synth_small / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    coco = json.loads((synth_small / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    gt_by_name = {Path(im["file_name"]).name: (im["width"], im["height"], []) for im in coco["images"]}
    by_id = {im["id"]: Path(im["file_name"]).name for im in coco["images"]}
    for ann in coco["annotations"]:
        gt_by_name[by_id[ann["image_id"]]][2].append({"xywh_px": ann["bbox"], "label": names[ann["category_id"]]})

    baseline, faulty = tmp_path / "baseline", tmp_path / "faulty"
    project_a, project_b = unique_title("kill-baseline"), unique_title("kill-faulty")
    env_a, env_b = _env(baseline, server, project_a, inbox), _env(faulty, server, project_b, inbox)

    # week 1, uninterrupted, then measure how long each stage takes
    first = _refresh(env_a)
    assert first["stages"]["push"]["counts"]["imported"] == 8
    durations = {name: max(0.05, stage["seconds"]) for name, stage in first["stages"].items()}

    kills: list[str] = []
    for k in range(KILLS_PER_PHASE):
        stage = STAGES[k % len(STAGES)]
        hit = _kill_during(faulty, env_b, stage, 0.9 * durations[stage], rng)
        if hit:
            kills.append(hit)
    _refresh(env_b)

    assert _annotate_pushed(server, project_a, gt_by_name) == 8
    assert _annotate_pushed(server, project_b, gt_by_name) == 8
    for path in week2:
        target = inbox / path.relative_to(synth_small / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)

    second = _refresh(env_a)
    assert second["stages"]["pull"]["counts"]["annotations_new"] == 8
    assert second["stages"]["export"]["counts"]["name"] == "v0001"
    durations = {name: max(0.05, stage["seconds"]) for name, stage in second["stages"].items()}
    for k in range(KILLS_PER_PHASE):
        stage = STAGES[(k + 3) % len(STAGES)]
        hit = _kill_during(faulty, env_b, stage, 0.9 * durations[stage], rng)
        if hit:
            kills.append(hit)
    _refresh(env_b)

    print(f"kills that hit a running refresh: {len(kills)} by stage {sorted(set(kills))}")
    assert len(kills) >= 20, kills
    assert len(set(kills)) >= 5, kills  # spread over the stages, not all in the slow ones

    a, b = _world_state(baseline, server, project_a), _world_state(faulty, server, project_b)
    assert a["duplicate_tasks"] == 0 and b["duplicate_tasks"] == 0
    assert len(a["task_frames"]) == 16
    assert a["task_frames"] == b["task_frames"]
    assert a["tasks_in_catalog"] == b["tasks_in_catalog"] == 16
    assert a["annotations"] == b["annotations"] and len(a["annotations"]) == 8
    assert [v[0] for v in a["versions"]] == [v[0] for v in b["versions"]] == ["v0001"]
    assert a["versions"] == b["versions"]  # same frames, labels, splits: same file checksums
