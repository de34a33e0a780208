"""Active learning against random, side by side in one run.

Learning curves on synthetic belts (`beltcurate synth` data: near-duplicate sequences, ~1% battery,
three sites with domain shift), and cheap selection-quality measures on the synthetic pool and on
real photos (trashnet-west-416). Results: benchmarks/results/active_learning_<config>.{json,md,png}.

    python benchmarks/active_learning/run.py --config tiny            # CI, a few minutes
    python benchmarks/active_learning/run.py --config full            # 4 strategies x 3 seeds x 5 rounds
    python benchmarks/active_learning/run.py --config trashnet-quality
    python benchmarks/active_learning/run.py --config trashnet-curve  # hours on CPU
    python benchmarks/active_learning/run.py --config synth-quality

Heavy steps (train / evaluate / score) take the shared CPU lock one at a time (``--lock``), so
other CPU-heavy jobs on the machine run between them instead of competing for the two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import RESULTS, machine, save  # noqa: E402

TRASHNET = Path(__file__).resolve().parents[3] / "shared" / "data" / "trashnet-west-416"
STRATEGIES = ["random", "uncertainty", "coreset", "hybrid"]

# Fixed before any result was seen; never tuned on the test split. Fine-tunes use a fixed
# iteration budget (not a time budget) so every strategy gets exactly the same training.
CONFIGS = {
    "tiny": dict(
        kind="curve", synth_frames=260, test_frames=100, pool_frames=None, seeds=[0], rounds=2, budget=12, initial=24,
        initial_iters=60, finetune_iters=12, input_size=(192, 144), batch_size=4,
    ),
    "full": dict(
        kind="curve", synth_frames=2400, test_frames=1000, pool_frames=800, seeds=[0, 1, 2], rounds=5, budget=40,
        initial=100, initial_iters=300, finetune_iters=50, input_size=(256, 192), batch_size=8,
    ),
    # Real photos, full learning curves: the YOLO test split (265 photos) is the test set, train+valid
    # (2,348) the pool. Too much for 2 CPU cores in one sitting (see docs/active_learning.md).
    "trashnet-curve": dict(
        kind="curve", data="trashnet", test_frames=265, pool_frames=None, seeds=[0, 1, 2], rounds=5, budget=100,
        initial=200, initial_iters=600, finetune_iters=100, input_size=(256, 256), batch_size=8,
    ),
    # The same, cut to what 2 CPU cores do in about half an hour: one seed (run it with
    # --strategies random,hybrid).
    "trashnet-curve-cpu": dict(
        kind="curve", data="trashnet", test_frames=265, pool_frames=None, seeds=[0], rounds=5, budget=100,
        initial=200, initial_iters=600, finetune_iters=100, input_size=(256, 256), batch_size=8,
    ),
    "trashnet-quality": dict(
        kind="quality", data="trashnet", seeds=[0, 1, 2], seed_frames=300, budget=100, train_iters=300,
        input_size=(256, 256), batch_size=8,
    ),
    "synth-quality": dict(
        kind="quality", synth_frames=2400, test_frames=1000, pool_frames=None, seeds=[0, 1, 2], seed_frames=200,
        budget=100, train_iters=300, input_size=(256, 192), batch_size=8,
    ),
}


def synth_data(frames: int, cache: Path) -> Path:
    """The synthetic belt set for ``frames`` (data seed 0), generated once into ``cache``."""
    from curation.synth import SynthConfig, generate

    out = cache / f"synth{frames}-s0"
    if not (out / "annotations.json").is_file():
        generate(out, SynthConfig(frames=frames, seed=0))
    return out


def load_data(cfg: dict, args):
    """The ``SimData`` of a configuration: trashnet (its YOLO test split held out, train+valid the
    pool) or the synthetic belt set with a test split and pool cap."""
    from active_learning.simulate import prepare_data

    if cfg.get("data") == "trashnet":
        return prepare_data(Path(args.trashnet))
    return prepare_data(synth_data(cfg["synth_frames"], Path(args.cache)), test_frames=cfg["test_frames"],
                        pool_frames=cfg["pool_frames"])


def run_curve(name: str, cfg: dict, args) -> dict:
    from active_learning.simulate import SimConfig, file_lock, run_simulation

    data = load_data(cfg, args)
    config = SimConfig(strategies=args.strategies or STRATEGIES, rounds=cfg["rounds"], budget=cfg["budget"],
                       seeds=cfg["seeds"], initial=cfg["initial"], test_frames=cfg["test_frames"],
                       pool_frames=cfg["pool_frames"], initial_iters=cfg["initial_iters"],
                       finetune_iters=cfg["finetune_iters"], input_size=cfg["input_size"], batch_size=cfg["batch_size"])
    work = Path(args.work) / f"active_learning_{name}"
    step_lock = file_lock(args.lock) if args.lock else None
    png = RESULTS / f"active_learning_{name}.png"

    def partial(results: dict) -> None:  # keep what finished if the run is cut short
        write_curve(name, results, png)

    kwargs = {"step_lock": step_lock} if step_lock else {}
    results = run_simulation(data, config, work, log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True),
                             on_update=partial, resume=args.resume, **kwargs)
    write_curve(name, results, png)
    return results


def write_curve(name: str, results: dict, png: Path) -> None:
    from active_learning.simulate import plot_curves, summary_markdown

    if not results.get("summary", {}).get("strategies"):
        return
    plot_curves(results, png)
    from active_learning.simulate import read_labeled_set, selection_stats

    coco, _, _ = read_labeled_set(results["data"]["source"])
    results["selection_stats"] = selection_stats(results, coco)
    stats_md = [f"| strategy | frames picked | objects/frame | {results['data']['rare_class']} objects/frame | "
                "distinct sequences/frame | site share |",
                "|---|---|---|---|---|---|"]
    for strategy, st in results["selection_stats"].items():
        stats_md.append(f"| {strategy} | {st['frames']} | {st['objects_per_frame']} | {st['rare_objects_per_frame']} | "
                        f"{st['distinct_sequences_per_frame']} | {st['site_share']} |")
    t = results["timings"]
    med = lambda v: (sorted(v)[len(v) // 2] if v else None)  # noqa: E731
    md = [f"# Active learning vs random: {name}", "",
          f"Data: {results['data']['source']} — pool {results['data']['pool_frames']} frames, test "
          f"{results['data']['test_frames']} frames ({results['data']['test_objects_rare']} "
          f"{results['data']['rare_class']} objects). Config: {results['config']['rounds']} rounds x budget "
          f"{results['config']['budget']} from {results['config']['initial']} initial frames, seeds "
          f"{results['config']['seeds']}, {results['config']['arch']} at {results['config']['input_size']}, round 0 "
          f"{results['config']['initial_iters']} iterations from scratch, then {results['config']['finetune_iters']} "
          f"warm-started iterations per round (batch {results['config']['batch_size']}).", "",
          summary_markdown(results), "",
          "What the strategies picked (all seeds and rounds so far):", "", *stats_md, "",
          f"Median step times: train {med(t['train_s'])} s, fine-tune {med(t['finetune_s'])} s, evaluate "
          f"{med(t['eval_s'])} s, score pool {med(t['score_s'])} s; wall {results.get('elapsed_s')} s "
          f"(complete: {results['complete']}).", "",
          f"![curves]({png.name})"]
    save(f"active_learning_{name}", {"config_name": name, **results}, "\n".join(md))


def run_quality(name: str, cfg: dict, args) -> dict:
    from active_learning.selection_quality import run_selection_quality
    from active_learning.simulate import file_lock

    data = load_data(cfg, args)
    rare = None if cfg.get("data") == "trashnet" else ["battery"]
    step_lock = file_lock(args.lock) if args.lock else None
    result = run_selection_quality(
        data, args.strategies or STRATEGIES, seeds=cfg["seeds"], seed_frames=cfg["seed_frames"], budget=cfg["budget"],
        train_iters=cfg["train_iters"], input_size=cfg["input_size"], batch_size=cfg["batch_size"], rare_classes=rare,
        work_dir=Path(args.work) / f"active_learning_{name}", step_lock=step_lock,
        log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True),
        on_update=lambda partial: write_quality(name, cfg, partial))
    write_quality(name, cfg, result)
    return result


def write_quality(name: str, cfg: dict, result: dict) -> None:
    from active_learning.selection_quality import quality_markdown

    pool = result["seeds"]
    md = [f"# Selection quality vs random: {name}", "",
          f"Data: {result['data']['source']} — pool {result['data']['pool_frames']} frames, rare classes "
          f"{result['data']['rare_classes']}. Per seed: a detector trained from scratch on a random seed split of "
          f"{cfg['seed_frames']} frames ({cfg['train_iters']} iterations), the rest of the pool scored, each strategy "
          f"selects {cfg['budget']} frames; errors = missed + false boxes at IoU 0.5 (predictions with score >= "
          f"{result['config']['score_thresh']}) against the hidden ground truth; near-duplicates = another frame of "
          f"the same selection within {result['config']['near_dup_max_hamming']} bits of a 64-bit pixel dHash.", "",
          f"Seeds done: {result['seeds_done']} of {result['config']['seeds']} (complete: {result['complete']}).", "",
          quality_markdown(result), "",
          "Pool averages per seed (errors/frame, rare objects/frame, near-dup share): " + "; ".join(
              f"seed {r['seed']}: {r['pool_errors_per_frame']}, {r['pool_rare_objects_per_frame']}, "
              f"{r['pool_near_duplicate_share']}" for r in pool)]
    save(f"active_learning_{name}", {"config_name": name, **result}, "\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--strategies", type=lambda s: [x for x in s.split(",") if x], default=None)
    parser.add_argument("--cache", default=os.environ.get("BELTCURATE_BENCH_CACHE", "/tmp/beltcurate-bench"),
                        help="Where generated synthetic data is kept between runs.")
    parser.add_argument("--work", default=os.environ.get("BELTCURATE_BENCH_WORK", "/tmp/beltcurate-bench/work"),
                        help="Checkpoints and per-round files.")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --work (finished rounds are kept)")
    parser.add_argument("--lock", default=None, help="flock file taken around each heavy step (shared CPU).")
    parser.add_argument("--trashnet", default=str(TRASHNET))
    parser.add_argument("--rewrite", action="store_true",
                        help="Only rewrite the result files from the work folder's results.json (e.g. of a running job).")
    args = parser.parse_args()
    cfg = CONFIGS[args.config]
    if args.rewrite:
        import json

        results = json.loads((Path(args.work) / f"active_learning_{args.config}" / "results.json").read_text())
        write_curve(args.config, results, RESULTS / f"active_learning_{args.config}.png")
        return
    started = time.perf_counter()
    (run_curve if cfg["kind"] == "curve" else run_quality)(args.config, cfg, args)
    print(f"{args.config}: {time.perf_counter() - started:.0f} s on {machine()['cpus']} CPUs")


if __name__ == "__main__":
    main()
