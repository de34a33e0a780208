"""One measurement per process (so peak RSS is that measurement's own): generate a synthetic pool,
or run one strategy (fast or naive) on a stored pool and report wall time and peak RSS.

    python -m benchmarks.selection.worker generate --n 100000 --dir DIR --out meta.json
    python -m benchmarks.selection.worker run --data DIR --strategy hybrid --budget 1000 --out result.json [--naive]
    python -m benchmarks.selection.worker dedupe --data DIR --budget 1000 --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

ARRAYS = ("embeddings", "labeled_embeddings", "uncertainty", "predicted_classes", "camera", "captured_at_s",
          "eligible", "group", "group_temporal")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def generate(n: int, out: Path, seed: int) -> dict:
    from benchmarks.selection.synthetic import make_pool

    started = time.perf_counter()
    pool = make_pool(n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        np.save(out / f"{name}.npy", getattr(pool, name))
    (out / "class_names.json").write_text(json.dumps(pool.class_names))
    return {"n": n, "seconds": round(time.perf_counter() - started, 2), "groups": int(pool.group.max() + 1)}


def load(data: Path):
    from active_learning.selection import Pool

    arrays = {name: np.load(data / f"{name}.npy") for name in ARRAYS}  # read fully: I/O is not the strategy's
    class_names = json.loads((data / "class_names.json").read_text())
    pool = Pool(uncertainty=arrays["uncertainty"], embeddings=arrays["embeddings"],
                labeled_embeddings=arrays["labeled_embeddings"], predicted_classes=arrays["predicted_classes"],
                class_names=class_names, camera=arrays["camera"], captured_at_s=arrays["captured_at_s"],
                eligible=arrays["eligible"], uncertainty_name="entropy_sum")
    return pool, arrays


def planted_pairs_selected(group: np.ndarray, rows: np.ndarray) -> int:
    g = group[rows]
    g = g[g >= 0]
    return int(len(g) - len(np.unique(g)))


def run(data: Path, strategy: str, budget: int, seed: int, naive: bool, rows_out: Path | None) -> dict:
    from active_learning.selection import STRATEGIES

    pool, arrays = load(data)
    import faiss  # noqa: F401  (imports are not the strategy's time)
    import scipy.sparse.csgraph  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    rss_loaded = current_rss_mb()
    fn = STRATEGIES.get(strategy)
    started = time.perf_counter()
    if naive:
        from benchmarks.selection.naive import patched

        with patched():
            result = fn(pool, budget, seed=seed)
    else:
        result = fn(pool, budget, seed=seed)
    seconds = time.perf_counter() - started
    if rows_out is not None:
        np.save(rows_out, result.pool_rows)
    return {
        "strategy": strategy, "naive": naive, "n": len(pool), "budget": budget, "seed": seed,
        "seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_load_mb": round(rss_loaded, 1),
        "selected": len(result), "stages": result.stats.get("stages"),
        "stage_seconds": result.stats.get("seconds"),
        "planted_duplicate_pairs_selected": planted_pairs_selected(arrays["group"], result.pool_rows),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }


def dedupe_quality(data: Path, budget: int, prefilter_factor: float, threshold: float, window_s: float) -> dict:
    """The hybrid's dedupe stages on their own, scored against the planted groups."""
    from active_learning.dedupe import factorize, global_dedupe, temporal_dedupe
    from active_learning.selection import top_uncertain

    pool, arrays = load(data)
    emb = np.ascontiguousarray(pool.embeddings)
    priority = np.where(pool.eligible, pool.uncertainty.astype(np.float64), np.inf)
    started = time.perf_counter()
    first = temporal_dedupe(emb, priority, factorize(pool.camera), pool.captured_at_s, threshold=threshold,
                            window_s=window_s)
    temporal_s = time.perf_counter() - started
    survivors = np.flatnonzero(pool.eligible & first.keep)
    candidates = top_uncertain(pool.uncertainty, survivors, int(prefilter_factor * budget))
    started = time.perf_counter()
    final = global_dedupe(emb, priority, np.sort(candidates), threshold=threshold, previous=first)
    global_s = time.perf_counter() - started
    group, temporal = arrays["group"], arrays["group_temporal"]
    rep = final.representative
    considered = np.isin(first.representative, candidates)  # rows the global stage looked at (via their group)
    found = {"temporal": [0, 0], "global": [0, 0]}
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(-1, int(group.max()) + 2))
    for g in range(int(group.max()) + 1):
        members = order[bounds[g + 1]:bounds[g + 2]]
        kind = "temporal" if temporal[g] else "global"
        scope = members if kind == "temporal" else members[considered[members]]
        if len(scope) < 2:
            continue
        found[kind][1] += 1
        found[kind][0] += int(len(np.unique(rep[scope])) == 1)
    dropped = np.flatnonzero(rep != np.arange(len(rep)))
    correct = (group[dropped] >= 0) & (group[dropped] == group[rep[dropped]])
    return {
        "n": len(pool), "candidates": int(len(candidates)),
        "temporal_seconds": round(temporal_s, 3), "global_seconds": round(global_s, 3),
        "temporal_groups_found": found["temporal"][0], "temporal_groups": found["temporal"][1],
        "global_groups_found": found["global"][0], "global_groups_in_candidates": found["global"][1],
        "recall": round((found["temporal"][0] + found["global"][0]) / max(1, found["temporal"][1] + found["global"][1]), 4),
        "collapsed": int(len(dropped)), "precision": round(float(correct.mean()) if len(dropped) else 1.0, 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--n", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--dir", type=Path, required=True)
    gen.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--strategy", required=True)
    r.add_argument("--budget", type=int, required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--naive", action="store_true")
    r.add_argument("--rows-out", type=Path)
    r.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("dedupe")
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--budget", type=int, required=True)
    d.add_argument("--prefilter-factor", type=float, default=4)
    d.add_argument("--threshold", type=float, default=0.05)
    d.add_argument("--window-s", type=float, default=2.0)
    d.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "generate":
        result = generate(args.n, args.dir, args.seed)
        args.dir.joinpath("meta.json").write_text(json.dumps(result))
    elif args.command == "run":
        result = run(args.data, args.strategy, args.budget, args.seed, args.naive, args.rows_out)
    else:
        result = dedupe_quality(args.data, args.budget, args.prefilter_factor, args.threshold, args.window_s)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
