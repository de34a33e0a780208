"""Label Studio push and pull against a real local server: beltcurate vs the naive SDK way,
side by side in one run.

    flock /tmp/beltcurate-cpu.lock .venv/bin/python benchmarks/labelstudio/run.py --tasks 10000 --repeats 3

- push: ``push_frames`` of N frames with 3 pre-annotated boxes each (bulk import in chunks,
  after one listing of the project for idempotency); then the same push again (all present).
- pull: N tasks with one finished annotation each (imported with their annotations, the fast
  way to make finished tasks), pulled into a fresh copy of the catalog by ``pull_annotations``
  (filtered listing + export in 1,000-task chunks + catalog upserts); then an incremental pull
  after 100 annotations were edited.
- naive push: one SDK ``projects.import_tasks`` call per task (no idempotency check at all).
- naive pull: SDK ``tasks.list(project=...)`` with its default paging (``fields=all``), then one
  SDK ``tasks.get`` per task, the pattern behind "8k tasks take 10 minutes" reports. It only
  fetches: no conversion, no database, so its ratio flatters it.
Naive runs use fewer tasks; ratios compare seconds per task.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.common import median, peak_rss_mb, save  # noqa: E402
from curation.catalog import Catalog, Frame, ModelVersion, Prediction  # noqa: E402
from curation.labelstudio import (  # noqa: E402
    LabelStudioClient,
    LabelStudioConfig,
    ensure_project,
    label_config,
    pull_annotations,
    push_frames,
)
from curation.lsserver import LabelStudioServer  # noqa: E402
from curation.synth import CLASSES  # noqa: E402
from exporters.labelstudio import boxes_to_ls_predictions  # noqa: E402
from exporters.types import Box  # noqa: E402

W, H = 640, 480
BOXES = [
    {"xywh_px": [20.0, 30.0, 100.0, 80.0], "label": "cardboard", "score": 0.91},
    {"xywh_px": [180.0, 120.0, 80.0, 80.0], "label": "pet_bottle", "score": 0.42},
    {"xywh_px": [400.0, 300.0, 60.0, 30.0], "label": "battery", "score": 0.37},
]


def make_catalog(path: Path, image_root: Path, n: int) -> list[int]:
    """N frames (paths below image_root; push does not read pixels) with predictions."""
    catalog = Catalog(f"sqlite:///{path}")
    with catalog.session() as session:
        version = ModelVersion(name="bench-det", arch="bench", classes=list(CLASSES), meta={})
        session.add(version)
        session.flush()
        frames = [Frame(content_hash=hashlib.sha256(str(i).encode()).hexdigest(), path=str(image_root / "belt" / f"{i:06d}.jpg"),
                        width=W, height=H, format="JPEG", size_bytes=1, site="west", line="L1", camera="cam1")
                  for i in range(n)]
        session.add_all(frames)
        session.flush()
        session.add_all(Prediction(frame_id=f.id, model_version_id=version.id, boxes=BOXES, scores={}, uncertainty=0.5)
                        for f in frames)
        ids = [f.id for f in frames]
    catalog.dispose()
    return ids


def config_for(server: LabelStudioServer, image_root: Path, project: str) -> LabelStudioConfig:
    return LabelStudioConfig(url=server.url, token=server.credentials().token, project=project,
                             relabel_project=f"{project} relabel", image_root=image_root, image_base_url=None,
                             chunk_size=500, reconcile_every=4, class_names=tuple(CLASSES))


def annotated_tasks(frame_ids: list[int], image_root: Path) -> list[dict]:
    result = boxes_to_ls_predictions([Box.from_catalog(b) for b in BOXES], W, H)
    for region in result:
        region.pop("score", None)
    return [{"data": {"image": f"/data/local-files/?d=belt/{fid:06d}.jpg", "frame_id": fid, "reason": ""},
             "annotations": [{"result": result, "lead_time": 5.0, "was_cancelled": False}]} for fid in frame_ids]


def naive_push(server: LabelStudioServer, frame_ids: list[int], project_title: str) -> float:
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=server.url, api_key=server.credentials().token)
    project = sdk.projects.create(title=project_title, label_config=label_config(CLASSES), model_version="bench-det")
    result = boxes_to_ls_predictions([Box.from_catalog(b) for b in BOXES], W, H)
    started = time.perf_counter()
    for fid in frame_ids:
        sdk.projects.import_tasks(id=project.id, request=[{
            "data": {"image": f"/data/local-files/?d=belt/{fid:06d}.jpg", "frame_id": fid, "reason": ""},
            "predictions": [{"model_version": "bench-det", "score": 0.5, "result": result}],
        }])
    return time.perf_counter() - started


def naive_pull(server: LabelStudioServer, project_id: int) -> tuple[float, int, int]:
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=server.url, api_key=server.credentials().token)
    started = time.perf_counter()
    n_tasks = n_annotations = 0
    for task in sdk.tasks.list(project=project_id):  # SDK default paging
        full = sdk.tasks.get(id=task.id)  # one call per task
        n_tasks += 1
        n_annotations += len(full.annotations or [])
    return time.perf_counter() - started, n_tasks, n_annotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--naive-push", type=int, default=300)
    parser.add_argument("--naive-pull", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the server folder for inspection")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-ls-"))
    image_root = workdir / "images"
    (image_root / "belt").mkdir(parents=True)
    server = LabelStudioServer(workdir / "server")
    started = time.perf_counter()
    server.start(document_root=image_root)
    print(f"server up in {time.perf_counter() - started:.1f} s at {server.url}")
    try:
        base = workdir / "base.sqlite"
        frame_ids = make_catalog(base, image_root, args.tasks)
        push_s, repush_s, pull_s, incremental_s, incremental_seen = [], [], [], [], []
        for repeat in range(args.repeats):
            catalog_path = workdir / f"push{repeat}.sqlite"
            shutil.copy(base, catalog_path)
            catalog = Catalog(f"sqlite:///{catalog_path}")
            config = config_for(server, image_root, f"bench push {repeat}")
            summary = push_frames(catalog, config, frame_ids)
            assert summary.imported == args.tasks, summary
            push_s.append(summary.seconds)
            again = push_frames(catalog, config, frame_ids)
            assert again.imported == 0 and again.already_present == args.tasks, again
            repush_s.append(again.seconds)
            catalog.dispose()
            print(f"push {repeat}: {summary.seconds:.1f} s, re-push {again.seconds:.1f} s")

        # finished tasks for the pull: imported with their annotations
        pull_config = config_for(server, image_root, "bench pull")
        client = LabelStudioClient(server.url, pull_config.token)
        project = ensure_project(client, pull_config.project, CLASSES, None)
        tasks = annotated_tasks(frame_ids, image_root)
        for start in range(0, len(tasks), 1000):
            client.import_tasks(project["id"], tasks[start:start + 1000])
        for repeat in range(args.repeats):
            catalog_path = workdir / f"pull{repeat}.sqlite"
            shutil.copy(base, catalog_path)
            catalog = Catalog(f"sqlite:///{catalog_path}")
            summary = pull_annotations(catalog, pull_config, client=client)
            assert summary.mode == "full" and summary.annotations_new == args.tasks, summary
            pull_s.append(summary.seconds)
            print(f"pull {repeat}: {summary.seconds:.1f} s ({summary.tasks_seen} tasks)")
            # edit 100 annotations (different ones each repeat), as annotators would
            listed, _ = client.list_tasks(project["id"], include="id")
            for task in listed[100 * repeat:100 * (repeat + 1)]:
                exported = next(client.export_tasks(project["id"], [task["id"]]))
                annotation = exported[0]["annotations"][0]
                annotation["result"][0]["value"]["x"] += 1.0
                client.request("PATCH", f"/api/annotations/{annotation['id']}", json={"result": annotation["result"]})
            time.sleep(3)  # past the watermark overlap
            # the next pull is incremental: edited tasks (plus those inside the overlap window)
            incremental = pull_annotations(catalog, pull_config, client=client)
            assert incremental.mode == "incremental", incremental
            assert incremental.annotations_updated == 100, incremental
            incremental_s.append(incremental.seconds)
            incremental_seen.append(incremental.tasks_seen)
            print(f"incremental pull {repeat}: {incremental.seconds:.1f} s ({incremental.tasks_seen} tasks re-read)")
            catalog.dispose()

        naive_push_ids = frame_ids[: args.naive_push]
        naive_push_s = naive_push(server, naive_push_ids, "bench naive push")
        print(f"naive push of {len(naive_push_ids)}: {naive_push_s:.1f} s")
        naive_project = ensure_project(client, "bench naive pull", CLASSES, None)
        client.import_tasks(naive_project["id"], annotated_tasks(frame_ids[: args.naive_pull], image_root))
        naive_pull_s, n_naive_tasks, n_naive_annotations = naive_pull(server, naive_project["id"])
        assert n_naive_tasks == n_naive_annotations == args.naive_pull
        print(f"naive pull of {n_naive_tasks}: {naive_pull_s:.1f} s")
        client.close()
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    n = args.tasks
    ours_push, ours_pull = median(push_s), median(pull_s)
    per_task = {
        "push": ours_push / n, "naive_push": naive_push_s / args.naive_push,
        "pull": ours_pull / n, "naive_pull": naive_pull_s / args.naive_pull,
    }
    data = {
        "tasks": n, "repeats": args.repeats, "boxes_per_task": len(BOXES),
        "push_s": push_s, "repush_s": repush_s, "pull_s": pull_s, "incremental_pull_s": incremental_s,
        "incremental_tasks_seen": incremental_seen,
        "naive_push": {"tasks": args.naive_push, "seconds": naive_push_s},
        "naive_pull": {"tasks": args.naive_pull, "seconds": naive_pull_s},
        "median_push_s": ours_push, "median_pull_s": ours_pull,
        "push_speedup_vs_naive": per_task["naive_push"] / per_task["push"],
        "pull_speedup_vs_naive": per_task["naive_pull"] / per_task["pull"],
        "naive_push_10k_estimate_s": per_task["naive_push"] * 10_000,
        "naive_pull_10k_estimate_s": per_task["naive_pull"] * 10_000,
        "goals": {"push_10k_s": 60, "pull_10k_s": 60},
        "peak_rss_mb": peak_rss_mb(),
    }
    rows = [
        ("beltcurate push (bulk, chunks of 500)", n, ours_push, per_task["push"], 1.0),
        ("beltcurate re-push (all present: one listing)", n, median(repush_s), median(repush_s) / n, None),
        ("naive push (one SDK import per task)", args.naive_push, naive_push_s, per_task["naive_push"],
         per_task["push"] / per_task["naive_push"]),
        ("beltcurate pull, full (listing + export chunks + upserts)", n, ours_pull, per_task["pull"], 1.0),
        (f"beltcurate pull, incremental (100 edited; median {median(incremental_seen):.0f} tasks re-read)", n, median(incremental_s), None, None),
        ("naive pull (SDK default paging + one get per task)", args.naive_pull, naive_pull_s, per_task["naive_pull"],
         per_task["pull"] / per_task["naive_pull"]),
    ]
    lines = [
        f"# Label Studio benchmark: {n} tasks, {len(BOXES)} boxes each, median of {args.repeats}, real server (1.23.2, SQLite)",
        "",
        "| variant | tasks | median s | ms/task | speed vs beltcurate |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, count, seconds, spt, speed in rows:
        lines.append(f"| {name} | {count} | {seconds:.2f} | {'' if spt is None else f'{1000 * spt:.2f}'} | "
                     f"{'' if speed is None else f'{speed:.3f}'} |")
    lines += [
        "",
        f"Push: {data['push_speedup_vs_naive']:.0f}x faster per task than the naive way "
        f"(naive 10k estimate {data['naive_push_10k_estimate_s']:.0f} s). "
        f"Pull: {data['pull_speedup_vs_naive']:.0f}x faster per task (naive 10k estimate "
        f"{data['naive_pull_10k_estimate_s']:.0f} s; it only fetches, no conversion or database).",
        f"Goals for 10k on 2 cores: push <= 60 s (got {ours_push:.1f} s), pull <= 60 s (got {ours_pull:.1f} s).",
        "Server and benchmark share the same 2 cores.",
    ]
    save("labelstudio", data, "\n".join(lines))


if __name__ == "__main__":
    main()
