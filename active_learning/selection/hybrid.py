"""``hybrid``, the default strategy: uncertainty x diversity, without near-duplicates, with a
rare-class quota and a little exploration.

Stages, ordered so that nothing O(N^2) touches the whole pool:

1. temporal near-duplicate collapse over the whole pool (same camera, close in time; O(N));
   labeled and pushed frames take part and win their group, so their near-duplicates go too;
2. uncertainty prefilter: the ``prefilter_factor x budget`` most uncertain survivors, plus the
   ``prefilter_factor x rare quota`` most uncertain survivors with a predicted rare class;
3. global near-duplicate collapse among those candidates (FAISS range search);
4. diversity over the uncertain candidates (``diversity``):
   ``kmeans`` (default): k-means with one cluster per pick over the candidates, and the most
   uncertain frame of each cluster (diverse mini-batch active learning, Zhdanov 2019): picks stay
   as uncertain as possible while near-copies share a cluster and cannot both be picked;
   ``kcenter``: k-center greedy seeded with the labeled frames, so picks fill the gaps of the
   labeled set (farthest-first: drawn to outliers); ``kmeanspp``: its randomized cousin;
5. rare-class quota: if fewer than ``rare_quota x budget`` picks have a predicted rare class, the
   rest of the quota comes from the rare candidates (the same diversity step, measured from
   labeled + picked);
   an unused quota goes back to the diversity stage;
6. exploration: ``explore_fraction x budget`` uniform draws from the deduplicated eligible pool
   (never within ``dedupe_threshold`` of a pick): a guard against a confidently wrong model;
7. fill: only when the deduplicated pool runs dry, the most uncertain remaining eligible rows.

The ranking interleaves the stages in proportion to their size, so the first 10% of the ranks
hold ~10% of each stage's picks.
"""

from __future__ import annotations

import time

import numpy as np

from active_learning.selection.base import DEFAULT_RARE_CLASSES, Picks, Pool, strategy
from active_learning.selection.strategies import top_uncertain
from curation.errors import InputError

DIVERSITY_METHODS = ("kmeans", "kcenter", "kmeanspp", "none")
# Exploration draws are checked against the picks in batches of this many (one FAISS search each).
_EXPLORE_BATCH = 1_024


@strategy("hybrid")
def hybrid_strategy(
    pool: Pool,
    k: int,
    *,
    rng: np.random.Generator,
    seed: int,
    prefilter_factor: float = 4,
    explore_fraction: float = 0.05,
    rare_quota: float = 0.15,
    rare_classes: tuple[str, ...] = DEFAULT_RARE_CLASSES,
    dedupe_threshold: float = 0.05,
    temporal_window_s: float = 2.0,
    diversity: str = "kmeans",
    dedupe_method: str = "auto",
) -> Picks:
    """See the module docstring. Score: the distance to the nearest labeled frame or earlier pick
    for diverse and rare picks (NaN when there is none, for exploration and for fill)."""
    from active_learning.dedupe import DedupeResult, factorize, global_dedupe, temporal_dedupe
    from active_learning.faiss_utils import nearest_distance

    _check_params(prefilter_factor, explore_fraction, rare_quota, dedupe_threshold, diversity)
    emb = pool.require_embeddings("hybrid")
    n = len(pool)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 4)
        clock = now

    # 1. temporal near-duplicates over the whole pool; ineligible rows win their group (inf).
    priority = np.where(pool.eligible, pool.uncertainty.astype(np.float64), np.inf)
    if pool.camera is not None and pool.captured_at_s is not None and temporal_window_s > 0 and dedupe_threshold > 0:
        groups = temporal_dedupe(emb, priority, factorize(pool.camera), pool.captured_at_s,
                                 threshold=dedupe_threshold, window_s=temporal_window_s)
    else:
        empty = np.zeros(0, np.int64)
        groups = DedupeResult(np.arange(n, dtype=np.int64), empty, empty)
    lap("temporal_dedupe")

    # 2. prefilter: most uncertain survivors, plus the most uncertain rare-class survivors.
    n_explore = int(round(explore_fraction * k))
    rare_mask = _rare_mask(pool, rare_classes)
    n_rare = int(round(rare_quota * k)) if rare_mask is not None else 0
    n_rare = min(n_rare, k - n_explore)
    survivors = np.flatnonzero(pool.eligible & groups.keep)
    cand_unc = top_uncertain(pool.uncertainty, survivors, int(np.ceil(prefilter_factor * k)))
    cand_rare = np.zeros(0, np.int64)
    if n_rare:
        rare_survivors = survivors[rare_mask[survivors]]
        cand_rare = top_uncertain(pool.uncertainty, rare_survivors, int(np.ceil(prefilter_factor * n_rare)))
    candidates = np.union1d(cand_unc, cand_rare)
    lap("prefilter")

    # 3. global near-duplicates among the candidates.
    if dedupe_threshold > 0 and len(candidates) > 1:
        groups = global_dedupe(emb, priority, candidates, threshold=dedupe_threshold, previous=groups,
                               method=dedupe_method, seed=seed)
    keep = groups.keep
    cand_unc, cand_rare = cand_unc[keep[cand_unc]], cand_rare[keep[cand_rare]]
    lap("global_dedupe")

    # Distance of every candidate to the nearest labeled frame (the k-center seeds).
    cand_all = np.union1d(cand_unc, cand_rare)
    to_labeled = nearest_distance(emb, pool.labeled_embeddings, rows=cand_all)
    lap("distance_to_labeled")

    selected: list[np.ndarray] = []
    stage_of: list[str] = []
    scores: list[np.ndarray] = []

    def add(rows: np.ndarray, score: np.ndarray, stage: str) -> None:
        selected.append(np.asarray(rows, dtype=np.int64))
        scores.append(np.asarray(score, dtype=np.float32))
        stage_of.extend([stage] * len(rows))

    def picked() -> np.ndarray:
        return np.concatenate(selected) if selected else np.zeros(0, np.int64)

    def diverse(pool_rows: np.ndarray, count: int, stage: str) -> None:
        pool_rows = np.setdiff1d(pool_rows, picked())
        pool_rows = pool_rows[np.lexsort((pool_rows, -pool.uncertainty[pool_rows].astype(np.float64)))]
        count = min(count, len(pool_rows))
        if count <= 0:
            return
        if diversity == "none":
            add(pool_rows[:count], np.full(count, np.nan), stage)
            return
        init = to_labeled[np.searchsorted(cand_all, pool_rows)]
        if len(picked()):
            init = np.minimum(init, nearest_distance(emb, emb[picked()], rows=pool_rows))
        result = _diversity_picks(emb, pool_rows, count, init, diversity, rng, seed)
        add(result.rows, np.where(np.isinf(result.pick_distance), np.nan, result.pick_distance), stage)

    # 4. diversity over the uncertain candidates.
    n_diverse = k - n_explore - n_rare
    diverse(cand_unc, n_diverse, "diverse")
    lap("diversity")

    # 5. rare-class quota (only what the diverse picks did not already cover).
    if n_rare:
        have = int(rare_mask[picked()].sum()) if len(picked()) else 0
        diverse(cand_rare, n_rare - have, "rare")
    # An unused rare quota (or a prefilter that ran dry) goes back to diversity.
    diverse(cand_unc, k - n_explore - len(picked()), "diverse")
    lap("rare_quota")

    # 6. exploration from the deduplicated eligible pool.
    n_left = k - len(picked())
    if n_left > 0:
        explore_rows = _explore(pool, emb, survivors[keep[survivors]], picked(), n_left, dedupe_threshold, rng)
        add(explore_rows, np.full(len(explore_rows), np.nan), "explore")
    lap("explore")

    # 7. fill when the deduplicated pool is exhausted.
    n_left = k - len(picked())
    if n_left > 0:
        rest = np.setdiff1d(pool.eligible_rows(), picked())
        add(top_uncertain(pool.uncertainty, rest, n_left), np.full(n_left, np.nan), "fill")

    rows = picked()
    score = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    rank = _interleave(stage_of)
    rows, score = rows[rank], score[rank]
    stages = [stage_of[i] for i in rank]
    parts = [[_STAGE_TEXT[stage].format(m=len(cand_unc))] for stage in stages]
    duplicates = groups.duplicates_of(rows)
    lap("rank")
    counts = {stage: stages.count(stage) for stage in ("diverse", "rare", "explore", "fill")}
    stats = {
        "seconds": seconds,
        "stages": counts,
        "candidates": int(len(cand_all)),
        "near_duplicates_collapsed": groups.n_collapsed,
        "temporal_pairs": groups.temporal_pairs,
        "global_pairs": groups.global_pairs,
    }
    return Picks(rows, score, stages, parts=parts, duplicates=duplicates, stats=stats)


_STAGE_TEXT = {
    "diverse": "diverse among the {m:,} most uncertain",
    "rare": "rare-class quota",
    "explore": "exploration (random draw)",
    "fill": "fill (deduplicated pool exhausted)",
}


def _check_params(prefilter_factor, explore_fraction, rare_quota, dedupe_threshold, diversity) -> None:
    if prefilter_factor < 1:
        raise InputError(f"select.prefilter_factor must be >= 1, got {prefilter_factor}")
    for name, value in (("explore_fraction", explore_fraction), ("rare_quota", rare_quota)):
        if not 0 <= value <= 1:
            raise InputError(f"select.{name} must be between 0 and 1, got {value}")
    if explore_fraction + rare_quota > 1:
        raise InputError(f"select.explore_fraction + select.rare_quota must be <= 1, got {explore_fraction + rare_quota}")
    if not 0 <= dedupe_threshold < 2:
        raise InputError(f"select.dedupe_threshold is a cosine distance in [0, 2), got {dedupe_threshold}")
    if diversity not in DIVERSITY_METHODS:
        raise InputError(f"unknown diversity method {diversity!r}; valid: {', '.join(sorted(DIVERSITY_METHODS))}")


def _rare_mask(pool: Pool, rare_classes) -> np.ndarray | None:
    if pool.predicted_classes is None or not rare_classes:
        return None
    columns = pool.class_index(rare_classes)
    if len(columns) == 0:
        return None
    return (pool.predicted_classes[:, columns] > 0).any(axis=1)


def _diversity_picks(emb, pool_rows, count, init, method, rng, seed):
    from active_learning.faiss_utils import KCenterResult, kcenter_greedy, kmeans, kmeanspp_seeding

    if method == "kmeans":
        # pool_rows are sorted most uncertain first, so the first member of a cluster is its most
        # uncertain; clusters are visited in the order of their best member.
        _, assign = kmeans(emb, count, rows=pool_rows, seed=seed)
        _, first = np.unique(assign, return_index=True)
        best = np.sort(first)[:count]
        return KCenterResult(pool_rows[best], np.asarray(init, np.float32)[best])
    if method == "kmeanspp":
        return kmeanspp_seeding(emb, count, rows=pool_rows, init_distance=init, rng=rng)
    # pool_rows are sorted most uncertain first: without seeds the first pick is the most uncertain.
    return kcenter_greedy(emb, count, rows=pool_rows, init_distance=init)


def _explore(pool: Pool, emb, survivors: np.ndarray, picked: np.ndarray, count: int, threshold: float,
             rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` uniform draws from ``survivors`` not picked, none within ``threshold`` of a
    pick or of an earlier draw."""
    from active_learning.faiss_utils import nearest_distance

    available = np.setdiff1d(survivors, picked)
    if len(available) == 0:
        return np.zeros(0, np.int64)
    order = rng.permutation(len(available))
    chosen: list[int] = []
    reference = emb[picked] if len(picked) else np.zeros((0, emb.shape[1]), np.float32)
    for start in range(0, len(order), _EXPLORE_BATCH):
        batch = available[order[start:start + _EXPLORE_BATCH]]
        far = nearest_distance(emb, reference, rows=batch) >= threshold if threshold > 0 else np.ones(len(batch), bool)
        for row in batch[far]:
            if threshold > 0 and chosen:
                if 1.0 - float(np.max(emb[chosen] @ emb[row])) < threshold:
                    continue
            chosen.append(int(row))
            if len(chosen) == count:
                return np.array(chosen, dtype=np.int64)
    return np.array(chosen, dtype=np.int64)


_STAGE_ORDER = {"diverse": 0, "rare": 1, "explore": 2, "fill": 3}


def _interleave(stages: list[str]) -> np.ndarray:
    """Rank positions: stages are merged in proportion to their size (fill always last)."""
    stage_arr = np.array([_STAGE_ORDER[s] for s in stages], dtype=np.int64)
    fraction = np.zeros(len(stages), dtype=np.float64)
    for code in np.unique(stage_arr):
        at = np.flatnonzero(stage_arr == code)
        fraction[at] = (np.arange(len(at)) + 0.5) / len(at)
    fraction[stage_arr == _STAGE_ORDER["fill"]] += 1.0
    return np.lexsort((np.arange(len(stages)), stage_arr, fraction))
