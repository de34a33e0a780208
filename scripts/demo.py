"""`make demo`: the whole loop on the embedded synthetic belt data, on this machine.

    synth -> local Label Studio -> refresh (ingest, score, select, push) -> annotators label the
    pushed tasks -> a second week's frames arrive -> refresh (pull, select, push, export v0001,
    report) -> FiftyOne review with saved error views -> URLs to open.

Everything lives under ./demo (config, state, frames, Label Studio data); rerunning reuses what
exists. The "annotators" here are a script that submits the synthetic ground truth through the
Label Studio API, one annotation per task, exactly as the editor's Submit button does; in real
use people do this step in the browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"
SOURCE = DEMO / "synth"  # what the cameras produced (two weeks)
INBOX = DEMO / "inbox"  # what has arrived at the facility so far
BELTCURATE = str(REPO / ".venv" / "bin" / "beltcurate")
CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"
DEMO_FRAMES = int(os.environ.get("DEMO_FRAMES", "900"))
LS_PORT = int(os.environ.get("DEMO_LABELSTUDIO_PORT", "8080"))
APP_PORT = int(os.environ.get("DEMO_FIFTYONE_PORT", "5151"))

CONFIG = f"""# beltcurate demo configuration (written by scripts/demo.py)
state_dir = "state"
classes = "synth/classes.yaml"

[model]
checkpoint = "{CHECKPOINT}"

[refresh]
inputs = ["inbox"]

[select]
budget = 40

[labelstudio]
url = "http://127.0.0.1:{LS_PORT}"
project = "beltcurate demo"
image_root = "."

[review]
port = {APP_PORT}
"""


def env() -> dict:
    return {**os.environ, "BELTCURATE_CONFIG": str(DEMO / "beltcurate.toml"), "OMP_WAIT_POLICY": "PASSIVE",
            "FIFTYONE_DO_NOT_TRACK": "true"}


def beltcurate(*args: str) -> dict:
    print("$ beltcurate " + " ".join(args), flush=True)
    done = subprocess.run([BELTCURATE, *args, "--json"], env=env(), capture_output=True, text=True, cwd=DEMO)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo stopped: 'beltcurate {' '.join(args)}' exited {done.returncode}")
    return json.loads(done.stdout) if done.stdout.strip() else {}


def arrive(week: int) -> int:
    """Copy a week of camera uploads into the inbox: week 1 gets two of every three belt
    sequences of every site and camera, week 2 the rest."""
    sequences = sorted({p.parent for p in (SOURCE / "images").rglob("*.jpg")})
    chosen = [seq for k, seq in enumerate(sequences) if (k % 3 == 2) == (week == 2)]
    n = 0
    for folder in chosen:
        target = INBOX / folder.relative_to(SOURCE / "images")
        target.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.jpg"):
            if not (target / path.name).exists():
                shutil.copy2(path, target / path.name)
                n += 1
    return n


def annotate_pushed_tasks() -> int:
    """The demo's annotators: submit the synthetic ground truth for every unlabeled task."""
    sys.path.insert(0, str(REPO))
    from curation.labelstudio import LabelStudioClient, as_config
    from curation.settings import load_settings
    from exporters.labelstudio import box_to_ls_region
    from exporters.types import Box

    settings = load_settings(DEMO / "beltcurate.toml", env={})
    config = as_config(settings)
    coco = json.loads((SOURCE / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    truth = {Path(im["file_name"]).name: (im, []) for im in coco["images"]}
    by_id = {im["id"]: Path(im["file_name"]).name for im in coco["images"]}
    for ann in coco["annotations"]:
        truth[by_id[ann["image_id"]]][1].append(ann)
    done = 0
    with LabelStudioClient(config.url, config.token) as client:
        project = client.projects_titled(config.project)[0]
        tasks, _ = client.list_tasks(project["id"], include="id,data,total_annotations")
        for task in tasks:
            if task.get("total_annotations"):
                continue
            image, anns = truth[Path(task["data"]["image"]).name]
            result = [box_to_ls_region(Box(tuple(a["bbox"]), names[a["category_id"]]), image["width"], image["height"],
                                       region_id=f"r{k}") for k, a in enumerate(anns)]
            client.request("POST", f"/api/tasks/{task['id']}/annotations/",
                           json={"result": result, "lead_time": 8.0 + len(anns), "was_cancelled": False})
            done += 1
    return done


STAGES = ("ingest", "score", "pull", "select", "push", "export", "report")
SHOWN = ("new", "scanned", "quarantined", "scored", "frames_per_s", "annotations_new", "selected", "eligible",
         "imported", "already_present", "name", "n_frames", "n_boxes", "skipped_because")


def show_stages(summary: dict) -> None:
    for name in STAGES:
        stage = summary["stages"][name]
        counts = {k: v for k, v in (stage.get("counts") or {}).items() if k in SHOWN}
        print(f"    {name:<7} {stage['status']:<8} {counts}")


def start_app() -> str:
    """Serve the FiftyOne app in the background (it keeps running after the demo ends)."""
    log = DEMO / "state" / "fiftyone-app.log"
    pid_file = DEMO / "state" / "fiftyone-app.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 0)
            return f"http://127.0.0.1:{APP_PORT}"
        except (ProcessLookupError, ValueError):
            pass
    with open(log, "ab") as out:
        proc = subprocess.Popen([BELTCURATE, "review", "--launch"], env=env(), cwd=DEMO, stdout=out, stderr=out,
                                start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return f"http://127.0.0.1:{APP_PORT}"


def main() -> None:
    started = time.perf_counter()
    DEMO.mkdir(exist_ok=True)
    (DEMO / "beltcurate.toml").write_text(CONFIG)
    if not (SOURCE / "annotations.json").exists():
        synth = beltcurate("synth", str(SOURCE), "--frames", str(DEMO_FRAMES), "--seed", "0", "--workers", "2")
        print(f"    {synth['frames']} frames in {synth['sequences']} belt sequences, {synth['objects']} objects")
    if not CHECKPOINT.exists():
        print("demo detector missing: training it (about 10 minutes on 2 cores)")
        beltcurate("synth", str(DEMO / "train"), "--frames", "1500", "--seed", "1")
        beltcurate("train", "--data", str(DEMO / "train"), "--out", str(CHECKPOINT), "--arch", "fcos_mnv3s",
                   "--epochs", "5", "--seed", "1", "--model-version", "fcos_mnv3s-demo-s1")
    ls = beltcurate("labelstudio", "start")
    print(f"    Label Studio {ls.get('url')} is up")

    print("\nweek 1: frames arrive, the detector scores them, the most useful go to Label Studio")
    print(f"    {arrive(1)} new frames in the inbox")
    show_stages(beltcurate("refresh"))

    print("\nannotators label the pushed tasks")
    print(f"    {annotate_pushed_tasks()} tasks labeled")

    print("\nweek 2: more frames; labels come back; a dataset version is exported")
    print(f"    {arrive(2)} new frames in the inbox")
    week2 = beltcurate("refresh")
    show_stages(week2)

    print("\nreview: FiftyOne dataset with evaluation and saved error views")
    review = beltcurate("review")
    app = start_app()
    status = beltcurate("labelstudio", "status")
    credentials = Path(status.get("root", DEMO / "state" / "labelstudio")) / "credentials.json"

    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s\n")
    print(f"Label Studio   {ls.get('url')}  (login: see {credentials}; stop: beltcurate labelstudio stop)")
    print(f"FiftyOne app   {app}  (starting in the background; log demo/state/fiftyone-app.log)")
    for name, url in (review.get("urls") or {}).items():
        print(f"  view {name:<18} {url}")
    print(f"Report         {week2.get('report')}")
    print(f"Catalog        {DEMO / 'state' / 'catalog.sqlite'}  (beltcurate --config demo/beltcurate.toml status)")


if __name__ == "__main__":
    main()
