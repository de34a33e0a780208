"""Control for the learning curves: how much of a curve is training, not labels?

Every round of `beltcurate simulate` adds labels *and* fine-tuning iterations. This control takes
the round-0 model of a finished `full` run and fine-tunes it round after round exactly like the
simulation does (same iterations, learning rate and training seed per round) but on the round-0
labeled frames only -- no new labels -- and evaluates it on the same test split. The gap between
this curve and `random`'s is what the added labels bought.

    python benchmarks/active_learning/budget_control.py --config full --seeds 0,1,2

Results: benchmarks/results/active_learning_<config>-budget-control.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.active_learning.run import CONFIGS, TRASHNET, load_data  # noqa: E402
from benchmarks.common import RESULTS, save  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="full", choices=[n for n, c in CONFIGS.items() if c["kind"] == "curve"])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds whose round-0 model exists")
    parser.add_argument("--cache", default=os.environ.get("BELTCURATE_BENCH_CACHE", "/tmp/beltcurate-bench"))
    parser.add_argument("--work", default=os.environ.get("BELTCURATE_BENCH_WORK", "/tmp/beltcurate-bench/work"))
    parser.add_argument("--lock", default=None, help="flock file taken around each fine-tune + evaluation")
    parser.add_argument("--trashnet", default=str(TRASHNET))
    args = parser.parse_args()

    from active_learning.simulate import ReferenceBackend, SimConfig, file_lock

    cfg = CONFIGS[args.config]
    data = load_data(cfg, args)
    work = Path(args.work) / f"active_learning_{args.config}"
    # The simulation's own backend: the fine-tunes are the simulation's, by construction.
    config = SimConfig(strategies=["random"], initial_iters=cfg["initial_iters"], finetune_iters=cfg["finetune_iters"],
                       input_size=tuple(cfg["input_size"]), batch_size=cfg["batch_size"])
    backend = ReferenceBackend(data, config, work / "test.json")
    lock = file_lock(args.lock) if args.lock else None
    simulated = json.loads((RESULTS / f"active_learning_{args.config}.json").read_text())
    earlier = RESULTS / f"active_learning_{args.config}-budget-control.json"
    curves: dict[int, list[dict]] = ({int(k): v for k, v in json.loads(earlier.read_text())["curves"].items()}
                                     if earlier.is_file() else {})
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed in curves:  # measured before: the same seeds give the same curve
            continue
        seed_dir = work / f"seed{seed}"
        round0, train_json = seed_dir / "round0.pt", seed_dir / "round0.json"
        if not round0.is_file():
            raise SystemExit(f"{round0} is missing: run benchmarks/active_learning/run.py --config {args.config} first")
        out_dir = work / "budget-control" / f"seed{seed}"
        out_dir.mkdir(parents=True, exist_ok=True)
        start = next(r for r in simulated["rounds"] if r["seed"] == seed and r["round"] == 0)
        points = [{"round": 0, "labeled": start["labeled"], "map50": start["map50"], "map": start["map"]}]
        init = round0
        for rnd in range(1, cfg["rounds"] + 1):
            ckpt = out_dir / f"round{rnd}.pt"
            with (lock() if lock else contextlib.nullcontext()):
                backend.train(train_json, ckpt, init=init, iters=config.finetune_iters, seed=seed * 1000 + rnd)
                ev = backend.evaluate(ckpt)
            points.append({"round": rnd, "labeled": start["labeled"], "map50": ev["map50"], "map": ev["map"]})
            print(time.strftime("%H:%M:%S"), f"seed {seed} round {rnd} (no new labels) mAP@0.5 {ev['map50']:.3f}",
                  flush=True)
            init = ckpt
        curves[seed] = points
        write(args.config, dict(sorted(curves.items())), simulated)  # a finished seed is kept
    write(args.config, dict(sorted(curves.items())), simulated)  # with the strategies' curves as they are now


def write(name: str, curves: dict[int, list[dict]], simulated: dict) -> None:
    by = {(r["seed"], r["strategy"], r["round"]): r["map50"] for r in simulated["rounds"]}
    strategies = simulated["config"]["strategies"]
    lines = [f"# Training-budget control: {name}", "",
             "mAP@0.5 per round. `no new labels`: the round-0 model fine-tuned round after round with the same "
             "iterations, learning rate and seeds as the simulation, on the round-0 frames only.", "",
             "| seed | curve | " + " | ".join(f"round {r}" for r in range(len(next(iter(curves.values()))))) + " |",
             "|---|---|" + "---|" * len(next(iter(curves.values())))]
    for seed, points in curves.items():
        lines.append(f"| {seed} | no new labels | " + " | ".join(f"{p['map50']:.3f}" for p in points) + " |")
        for strategy in strategies:
            values = [by.get((seed, strategy, p["round"])) for p in points]
            lines.append(f"| {seed} | {strategy} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in values) + " |")
    save(f"active_learning_{name}-budget-control", {"config_name": name, "curves": {str(k): v for k, v in curves.items()}},
         "\n".join(lines))


if __name__ == "__main__":
    main()
