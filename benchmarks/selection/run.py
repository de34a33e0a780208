"""Selection benchmark: every strategy at n frames (128-d, clustered, planted near-duplicate
groups), budget 1%, wall time and peak RSS per run (one process per run), side by side with a
naive scikit-learn reference of hybrid and coreset (same strategy code on sklearn components, see
naive.py) at the sizes where the reference finishes, plus near-duplicate recall.

    flock /tmp/beltcurate-cpu.lock .venv/bin/python benchmarks/selection/run.py \\
        --sizes 20000 100000 1000000 --repeats 3 --naive-max 100000

Results: benchmarks/results/selection.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.common import median, save  # noqa: E402

STRATEGIES = ("random", "uncertainty", "balance", "cluster", "coreset", "hybrid")
NAIVE = ("hybrid", "coreset")
SMALL = 20_000  # up to this n the naive reference is repeated as often as ours
GOALS = {"hybrid_1m_seconds": 60, "hybrid_1m_peak_rss_mb": 3 * 1024, "speedup_vs_naive": 10, "dedupe_recall": 0.95}


def worker(*args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "benchmarks.selection.worker", *args, "--out", out.name]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text() or "{}")


def measure(data: Path, strategy: str, budget: int, repeats: int, naive: bool, rows_dir: Path) -> dict:
    runs = []
    rows_path = rows_dir / f"{strategy}{'-naive' if naive else ''}.npy"
    for repeat in range(repeats):
        args = ["run", "--data", str(data), "--strategy", strategy, "--budget", str(budget), "--seed", "0"]
        if naive:
            args.append("--naive")
        if repeat == 0:
            args += ["--rows-out", str(rows_path)]
        runs.append(worker(*args))
        print(f"  {strategy}{' (naive)' if naive else ''}: {runs[-1]['seconds']} s, "
              f"peak RSS {runs[-1]['peak_rss_mb']:.0f} MiB", flush=True)
    out = dict(runs[0])
    out["seconds_runs"] = [r["seconds"] for r in runs]
    out["seconds"] = round(median(out["seconds_runs"]), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["rows_path"] = str(rows_path)
    return out


def compare(ours: dict, ref: dict) -> dict:
    a, b = np.load(ours["rows_path"]), np.load(ref["rows_path"])
    same_length = len(a) == len(b)
    return {
        "speedup": round(ref["seconds"] / ours["seconds"], 1) if ours["seconds"] else None,
        "identical_ranked": bool(np.array_equal(a, b)),
        "same_set_share": round(len(np.intersect1d(a, b)) / max(1, len(a)), 4),
        "ranks_differing": int((a != b).sum()) if same_length else None,
    }


def _same_text(comp: dict) -> str:
    if comp["identical_ranked"]:
        return "identical"
    if comp["same_set_share"] == 1.0 and comp.get("ranks_differing") is not None:
        return f"same frames; {comp['ranks_differing']} ranks swapped (float32 near-tie)"
    return f"{comp['same_set_share']:.1%} same frames"


def goals(results: dict) -> list[str]:
    out = []
    big = results["sizes"].get("1000000", {}).get("strategies", {}).get("hybrid")
    if big:
        out.append(f"- hybrid at 1M: {big['seconds']:.1f} s (goal <= {GOALS['hybrid_1m_seconds']} s), "
                   f"peak RSS {big['peak_rss_mb']:.0f} MiB (goal <= {GOALS['hybrid_1m_peak_rss_mb']} MiB)")
    for n, entry in results["sizes"].items():
        for name, comp in entry["comparison"].items():
            out.append(f"- {name} at {int(n):,}: {comp['speedup']}x faster than the naive reference "
                       f"(goal >= {GOALS['speedup_vs_naive']}x), output {_same_text(comp)}")
    recalls = [e["dedupe"]["recall"] for e in results["sizes"].values()]
    out.append(f"- planted near-duplicate groups found: recall {min(recalls):.3f} at worst (goal >= {GOALS['dedupe_recall']})")
    naive_100k = results["sizes"].get("100000", {}).get("naive", {}).get("hybrid")
    if naive_100k and "1000000" in results["sizes"]:
        projected_h = naive_100k["seconds"] * 100 / 3600
        out.append(f"- the naive hybrid was not run at 1M: its all-pairs radius search grows with n^2, so "
                   f"{naive_100k['seconds']:.0f} s at 100k projects to ~{projected_h:.0f} h (a projection, not a measurement)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--budget-fraction", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-repeats", type=int, default=1)
    parser.add_argument("--naive-max", type=int, default=100_000, help="Largest n the naive reference runs at.")
    parser.add_argument("--large-budget-fraction", type=float, default=0.05,
                        help="Also run hybrid at this budget on the largest n (0 = skip).")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "beltcurate-selection-bench")
    parser.add_argument("--render-only", action="store_true",
                        help="Rewrite selection.md (and the comparisons) from the last run's JSON and saved rows.")
    args = parser.parse_args()
    if args.render_only:
        from benchmarks.common import RESULTS

        results = json.loads((RESULTS / "selection.json").read_text())
        for entry in results["sizes"].values():
            for name, ref in entry["naive"].items():
                entry["comparison"][name] = compare(entry["strategies"][name], ref)
        results.setdefault("measured_at", results.get("when"))  # save() stamps the render time as "when"
        for key in ("benchmark", "when", "machine"):
            results.pop(key, None)
        save("selection", results, markdown(results))
        return

    results: dict = {"sizes": {}, "goals": GOALS, "args": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    for n in args.sizes:
        data = args.cache / f"n{n}"
        if not (data / "meta.json").exists():
            print(f"generating n={n:,} ...", flush=True)
            worker("generate", "--n", str(n), "--seed", "0", "--dir", str(data))
        budget = max(1, int(round(args.budget_fraction * n)))
        rows_dir = data / "rows"
        rows_dir.mkdir(exist_ok=True)
        print(f"n={n:,} budget={budget:,}", flush=True)
        entry: dict = {"budget": budget, "strategies": {}, "naive": {}, "comparison": {}}
        for strategy in args.strategies:
            entry["strategies"][strategy] = measure(data, strategy, budget, args.repeats, False, rows_dir)
        if n <= args.naive_max:
            for strategy in NAIVE:
                if strategy in args.strategies:
                    repeats = args.repeats if n <= SMALL else args.naive_repeats  # minutes per naive run above
                    entry["naive"][strategy] = measure(data, strategy, budget, repeats, True, rows_dir)
                    entry["comparison"][strategy] = compare(entry["strategies"][strategy], entry["naive"][strategy])
        if n == max(args.sizes) and args.large_budget_fraction and "hybrid" in args.strategies:
            large = max(1, int(round(args.large_budget_fraction * n)))
            print(f"n={n:,} hybrid at budget {large:,} (candidates above the exact range-search limit: IVF)")
            entry["hybrid_large_budget"] = measure(data, "hybrid", large, args.repeats, False, rows_dir)
        entry["dedupe"] = worker("dedupe", "--data", str(data), "--budget", str(budget))
        print(f"  dedupe recall {entry['dedupe']['recall']}, precision {entry['dedupe']['precision']}", flush=True)
        results["sizes"][str(n)] = entry
    results["seconds"] = round(time.perf_counter() - started, 1)
    save("selection", results, markdown(results))


def markdown(results: dict) -> str:
    lines = ["# Selection benchmark", "",
             "Synthetic pools: 128-d clustered unit embeddings, planted near-duplicate groups (10% of frames; "
             "80% temporal, 20% scattered), 1% labeled-seed set, budget 1% of n. One process per run; "
             "wall time = the strategy call (median of runs), peak RSS = the whole process (data included). "
             "Naive = the same strategy code on scikit-learn components (NearestNeighbors radius search "
             "for near-duplicates, pairwise_distances per k-center pick). 2 shared CPU cores.", ""]
    lines += ["| n | budget | strategy | seconds (median) | peak RSS MiB | planted dup pairs selected | naive seconds | speedup | same output |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n, entry in results["sizes"].items():
        for name, run in entry["strategies"].items():
            naive = entry["naive"].get(name)
            comp = entry["comparison"].get(name)
            same = _same_text(comp) if comp else "—"
            lines.append(
                f"| {int(n):,} | {entry['budget']:,} | {name} | {run['seconds']:.2f} | {run['peak_rss_mb']:.0f} | "
                f"{run['planted_duplicate_pairs_selected']} | {naive['seconds']:.1f} | {comp['speedup']}x | {same} |"
                if naive else
                f"| {int(n):,} | {entry['budget']:,} | {name} | {run['seconds']:.2f} | {run['peak_rss_mb']:.0f} | "
                f"{run['planted_duplicate_pairs_selected']} | not run | | |"
            )
    for n, entry in results["sizes"].items():
        large = entry.get("hybrid_large_budget")
        if large:
            lines.append(f"| {int(n):,} | {large['budget']:,} | hybrid (budget {large['budget'] / int(n):.0%}: IVF dedupe) | "
                         f"{large['seconds']:.2f} | {large['peak_rss_mb']:.0f} | {large['planted_duplicate_pairs_selected']} | "
                         f"not run | | |")
    lines += ["", "Near-duplicate collapse (hybrid's stages alone; recall over planted groups: temporal groups over "
              "the whole pool, scattered groups among the prefiltered candidates):", "",
              "| n | temporal s | global s (candidates) | temporal groups found | scattered groups found | recall | precision |",
              "|---|---|---|---|---|---|---|"]
    for n, entry in results["sizes"].items():
        d = entry["dedupe"]
        lines.append(f"| {int(n):,} | {d['temporal_seconds']:.2f} | {d['global_seconds']:.2f} ({d['candidates']:,}) | "
                     f"{d['temporal_groups_found']}/{d['temporal_groups']} | "
                     f"{d['global_groups_found']}/{d['global_groups_in_candidates']} | {d['recall']:.3f} | {d['precision']:.3f} |")
    lines = lines[:1] + ["", "Goals (issue 4):", *goals(results)] + lines[1:]
    hybrid_stages = {n: e["strategies"].get("hybrid", {}).get("stage_seconds") for n, e in results["sizes"].items()}
    lines += ["", "hybrid stage seconds (first run): " + "; ".join(
        f"n={int(n):,}: " + ", ".join(f"{k} {v}" for k, v in (stages or {}).items()) for n, stages in hybrid_stages.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
