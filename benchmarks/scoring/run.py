"""Scoring benchmark: `beltcurate score` end to end vs the bare model forward, same frames, one run.

    flock /tmp/beltcurate-cpu.lock .venv/bin/python benchmarks/scoring/run.py [--frames 600] [--reps 3]

Per repetition (interleaved, so machine load hits both sides alike):
  bare  the torchvision model alone (stock postprocess, no embedding hook) over tensors decoded
        before the clock starts, same batch size, torch.inference_mode;
  e2e   `beltcurate score --model CKPT` as a subprocess on a fresh copy of an ingested catalog:
        JPEG decode (DataLoader worker), forward with probability recovery + embedding hook,
        uncertainty scores, vector store appends, chunked catalog commits.
The ratio that matters is e2e scoring-loop frames/s over bare frames/s (goal >= 0.85); the
wall-clock ratio (process start, torch import and model load included) is reported too.
A per-stage breakdown (decode, scores + row conversion, commits) says what limits e2e.
Writes benchmarks/results/scoring.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import median, peak_rss_mb, save  # noqa: E402

BELTCURATE = str(REPO / ".venv" / "bin" / "beltcurate")
DEFAULT_CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"


def cli_env(state: Path, batch_size: int, workers: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELTCURATE_")}
    env.update(BELTCURATE_STATE_DIR=str(state), BELTCURATE_SCORE_BATCH_SIZE=str(batch_size), OMP_WAIT_POLICY="PASSIVE")
    if workers is not None:
        env["BELTCURATE_SCORE_WORKERS"] = str(workers)
    return env


def bare_forward(checkpoint: Path, tensors, batch_size: int) -> dict:
    """Frames/s and CPU-s/frame of the stock torchvision model over pre-decoded tensors."""
    import torch
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.ssd import SSD

    from active_learning.detectors import read_checkpoint
    from active_learning.detectors.torchvision_adapter import ARCHS, model_from_checkpoint

    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    family = ARCHS.get(ckpt["arch"]).family
    if family == "fasterrcnn":
        model.roi_heads.__class__ = RoIHeads
    else:
        model.__class__ = {"retinanet": RetinaNet, "fcos": FCOS, "ssd": SSD}[family]
    with torch.inference_mode():
        model(tensors[:batch_size])  # warm-up (allocator, first-call overheads), as e2e warms up on its first batch
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, len(tensors), batch_size):
            model(tensors[start: start + batch_size])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"frames_per_s": len(tensors) / wall, "cpu_s_per_frame": cpu / len(tensors), "seconds": wall}


def end_to_end(checkpoint: Path, state_template: Path, work: Path, batch_size: int, n_frames: int,
               workers: int | None) -> dict:
    state = work / "state"
    if state.exists():
        shutil.rmtree(state)
    shutil.copytree(state_template, state)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    done = subprocess.run([BELTCURATE, "score", "--model", str(checkpoint), "--json"], env=cli_env(state, batch_size, workers),
                          capture_output=True, text=True)
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"beltcurate score failed:\n{done.stderr}")
    summary = json.loads(done.stdout)
    assert summary["scored"] == n_frames, summary
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"loop_frames_per_s": summary["frames_per_s"], "wall_frames_per_s": n_frames / wall, "wall_s": wall,
            "load_s": summary["load_seconds"], "cpu_s_per_frame": cpu / n_frames,
            "peak_rss_mb_children": after.ru_maxrss / 1024}


def stage_breakdown(checkpoint: Path, paths: list[str], tmp: Path, batch_size: int) -> dict:
    """Seconds per frame of each stage e2e adds to the forward, measured in-process on the same frames."""
    import numpy as np

    from active_learning.detectors import load_detector
    from active_learning.engine import ScoringConfig, results_from_detections
    from active_learning.train import read_rgb
    from curation.catalog import Catalog, Frame, ModelVersion, ScoringRun
    from curation.scoring import _commit_chunk
    from active_learning.embeddings import VectorStore

    from active_learning.detectors.torchvision_adapter import images_to_tensors
    from active_learning.engine import iter_local

    detector = load_detector(checkpoint)
    config = ScoringConfig(batch_size=batch_size)
    t0 = time.perf_counter()
    images = [read_rgb(p) for p in paths]
    decode = time.perf_counter() - t0
    tensors = images_to_tensors(images)
    # Back to back in this process: the scoring loop without the catalog vs the bare forward.
    loop_fps, bare_fps = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        for _batch in iter_local(detector, list(enumerate(paths)), ScoringConfig(batch_size=batch_size, workers=1)):
            pass
        loop_fps.append(len(paths) / (time.perf_counter() - t0))
        bare_fps.append(bare_forward(checkpoint, tensors, batch_size)["frames_per_s"])
    t0 = time.perf_counter()
    detections = []
    for start in range(0, len(images), batch_size):
        detections.extend(detector.predict(images[start: start + batch_size]))
    predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = []
    for start in range(0, len(images), batch_size):
        ids = list(range(1 + start, 1 + min(len(images), start + batch_size)))
        results.extend(results_from_detections(ids, detections[start: start + batch_size], detector.classes, config))
    scores = time.perf_counter() - t0
    catalog = Catalog(f"sqlite:///{tmp / 'breakdown.sqlite'}")
    with catalog.session() as session:
        for i, path in enumerate(paths, start=1):
            session.add(Frame(id=i, content_hash=f"{i:064d}", path=path, width=320, height=240, format="jpeg",
                              size_bytes=1, site="s", line="l", camera="c"))
        version = ModelVersion(name="bench", arch="x", classes=detector.classes, meta={})
        session.add(version)
        session.flush()
        run = ScoringRun(model_version_id=version.id, engine="local")
        session.add(run)
        session.flush()
        version_id, run_id = version.id, run.id
    store = VectorStore(tmp / "vectors", "bench")
    t0 = time.perf_counter()
    for start in range(0, len(results), 256):
        _commit_chunk(catalog, store, version_id, run_id, results[start: start + 256])
    commit = time.perf_counter() - t0
    catalog.dispose()
    n = len(paths)
    del np
    return {"decode_ms": 1000 * decode / n, "predict_ms": 1000 * predict / n, "scores_ms": 1000 * scores / n,
            "commit_ms": 1000 * commit / n, "inprocess_loop_fps": max(loop_fps), "inprocess_bare_fps": max(bare_fps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--workers", type=int, help="score.workers for e2e (default: the setting's default)")
    args = parser.parse_args()

    from active_learning.detectors.torchvision_adapter import images_to_tensors
    from active_learning.train import read_rgb

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp_name:
        tmp = Path(tmp_name)
        frames_dir = tmp / "frames"
        template = tmp / "template"
        subprocess.run([BELTCURATE, "synth", str(frames_dir), "--frames", str(args.frames), "--seed", "11"],
                       check=True, capture_output=True, env=cli_env(template, args.batch_size))
        subprocess.run([BELTCURATE, "ingest", str(frames_dir / "images"), "--site-from-path"], check=True,
                       capture_output=True, env=cli_env(template, args.batch_size))
        paths = sorted(str(p.resolve()) for p in (frames_dir / "images").rglob("*.jpg"))
        tensors = images_to_tensors([read_rgb(p) for p in paths])

        bare_runs, e2e_runs = [], []
        for rep in range(args.reps):
            bare_runs.append(bare_forward(args.checkpoint, tensors, args.batch_size))
            e2e_runs.append(end_to_end(args.checkpoint, template, tmp, args.batch_size, len(paths), args.workers))
            print(f"rep {rep}: bare {bare_runs[-1]['frames_per_s']:.1f} frames/s, e2e loop "
                  f"{e2e_runs[-1]['loop_frames_per_s']:.1f} frames/s, e2e wall {e2e_runs[-1]['wall_frames_per_s']:.1f}",
                  flush=True)
        breakdown = stage_breakdown(args.checkpoint, paths, tmp, args.batch_size)

    bare_fps = median([r["frames_per_s"] for r in bare_runs])
    loop_fps = median([r["loop_frames_per_s"] for r in e2e_runs])
    wall_fps = median([r["wall_frames_per_s"] for r in e2e_runs])
    ratios = [e["loop_frames_per_s"] / b["frames_per_s"] for b, e in zip(bare_runs, e2e_runs)]
    data = {
        "frames": len(paths), "reps": args.reps, "batch_size": args.batch_size, "workers": args.workers,
        "checkpoint": str(args.checkpoint.relative_to(REPO) if args.checkpoint.is_relative_to(REPO) else args.checkpoint),
        "bare_frames_per_s": round(bare_fps, 2),
        "e2e_loop_frames_per_s": round(loop_fps, 2),
        "e2e_wall_frames_per_s": round(wall_fps, 2),
        "ratio_loop_vs_bare": round(median(ratios), 3),
        "ratio_per_rep": [round(r, 3) for r in ratios],
        "ratio_wall_vs_bare": round(wall_fps / bare_fps, 3),
        "goal_ratio": 0.85,
        "bare_cpu_s_per_frame": round(median([r["cpu_s_per_frame"] for r in bare_runs]), 4),
        "e2e_cpu_s_per_frame": round(median([r["cpu_s_per_frame"] for r in e2e_runs]), 4),
        "e2e_startup_s": round(median([r["load_s"] for r in e2e_runs]), 2),
        "peak_rss_mb_e2e_process": round(max(r["peak_rss_mb_children"] for r in e2e_runs), 1),
        "peak_rss_mb_bench_process_with_predecoded_tensors": round(peak_rss_mb(), 1),
        "stage_ms_per_frame": {k: round(v, 2) for k, v in breakdown.items()},
        "bare_runs": bare_runs, "e2e_runs": e2e_runs,
    }
    b = data["stage_ms_per_frame"]
    markdown = f"""# Scoring benchmark

`beltcurate score` end to end vs the bare torchvision forward over pre-decoded tensors, same
{data['frames']} synthetic 320x240 frames, batch {data['batch_size']}, checkpoint `{data['checkpoint']}`,
{data['reps']} interleaved repetitions, medians. Reproduce:
`flock /tmp/beltcurate-cpu.lock .venv/bin/python benchmarks/scoring/run.py --frames {data['frames']} --reps {data['reps']}`

| | frames/s | CPU-s / frame |
|---|---:|---:|
| bare model forward (stock postprocess, tensors in memory) | {data['bare_frames_per_s']} | {data['bare_cpu_s_per_frame']} |
| `beltcurate score`, scoring loop (decode + forward + scores + commits) | {data['e2e_loop_frames_per_s']} | {data['e2e_cpu_s_per_frame']} (whole process) |
| `beltcurate score`, wall clock incl. start-up ({data['e2e_startup_s']} s) | {data['e2e_wall_frames_per_s']} | |

**Ratio (scoring loop / bare): {data['ratio_loop_vs_bare']}** (goal >= 0.85; per repetition {data['ratio_per_rep']}).
Wall-clock ratio including process start, torch import and model load: {data['ratio_wall_vs_bare']}.
Peak RSS of the `beltcurate score` process tree: {data['peak_rss_mb_e2e_process']} MiB.

Where the time goes (in-process, same frames, ms per frame): JPEG decode {b['decode_ms']} (runs in a
DataLoader worker, with the uint8 -> float conversion, overlapping the forward), `detector.predict`
incl. probability recovery and embedding hook {b['predict_ms']}, uncertainty scores + row
conversion {b['scores_ms']} (helper thread, overlapping the next forward), vector store + catalog
commit {b['commit_ms']}. Back to back in one process, the scoring loop without the catalog ran at
{b['inprocess_loop_fps']:.1f} frames/s vs {b['inprocess_bare_fps']:.1f} for the bare forward (best of 2 each).

What limits it: the machine has 2 cores and the forward already uses both (torch intra-op threads),
so every extra millisecond of CPU -- decode, conversion, scoring, JSON, SQLite commits, the
DataLoader worker's IPC -- comes out of the forward's share instead of running on idle cores; a
fresh `beltcurate score` process also pays one-time costs inside the loop (worker fork, first-batch
warm-up). The machine is shared, so single runs vary by +-15%; the ratio is the median of per-rep
ratios of interleaved runs. On a machine with spare cores for the decode workers the same loop
keeps the forward fed.
"""
    save("scoring", data, markdown)


if __name__ == "__main__":
    main()
