"""The single-idea strategies: random (the control), uncertainty, coreset, cluster, balance.

Each core gets ``k = min(budget, eligible)`` and returns ``Picks`` (see ``base.strategy``).
Ties are broken by the lowest pool row everywhere, so results never depend on sort stability.
"""

from __future__ import annotations

import numpy as np

from active_learning.selection.base import Picks, Pool, strategy
from curation.errors import InputError


def top_uncertain(uncertainty: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most uncertain of ``rows`` (ascending pool rows), most uncertain first; ties:
    lowest row. O(n) selection plus O(k log k) sorting."""
    rows = np.asarray(rows, dtype=np.int64)
    k = int(min(max(k, 0), len(rows)))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    values = uncertainty[rows]
    if k < len(rows):
        cut = np.partition(values, len(values) - k)[len(values) - k]  # the k-th largest value
        above = rows[values > cut]
        at_cut = np.sort(rows[values == cut])[: k - len(above)]
        chosen = np.concatenate([above, at_cut])
    else:
        chosen = rows
    return chosen[np.lexsort((chosen, -uncertainty[chosen].astype(np.float64)))]


@strategy("random")
def random_strategy(pool: Pool, k: int, *, rng: np.random.Generator, seed: int) -> Picks:
    """Uniform draw from the eligible rows (the control every benchmark compares against).
    Rank = draw order; score = NaN."""
    rows = rng.choice(pool.eligible_rows(), size=k, replace=False).astype(np.int64)
    return Picks(rows, np.full(k, np.nan, np.float32), ["random"] * k, parts=[["random draw (control)"]] * k)


@strategy("uncertainty")
def uncertainty_strategy(pool: Pool, k: int, *, rng: np.random.Generator, seed: int) -> Picks:
    """Top-k by uncertainty (no diversity). Score = uncertainty."""
    rows = top_uncertain(pool.uncertainty, pool.eligible_rows(), k)
    return Picks(rows, pool.uncertainty[rows], ["uncertain"] * k, parts=[["most uncertain"]] * k)


@strategy("coreset")
def coreset_strategy(pool: Pool, k: int, *, rng: np.random.Generator, seed: int) -> Picks:
    """k-center greedy over all eligible rows, seeded with the labeled frames: each pick is the
    frame farthest from everything labeled or picked, so it fills the gaps of the labeled set.
    Without labeled frames the first pick is the most uncertain frame. Score = the pick's cosine
    distance to the nearest labeled-or-picked frame (NaN for a first pick without seeds)."""
    from active_learning.faiss_utils import kcenter_greedy, nearest_distance

    emb = pool.require_embeddings("coreset")
    rows = pool.eligible_rows()
    if pool.n_labeled:
        init = nearest_distance(emb, pool.labeled_embeddings, rows=rows)
        first = None
    else:
        init = None
        first = int(np.searchsorted(rows, top_uncertain(pool.uncertainty, rows, 1)[0]))
    result = kcenter_greedy(emb, k, rows=rows, init_distance=init, first=first)
    score = np.where(np.isinf(result.pick_distance), np.nan, result.pick_distance).astype(np.float32)
    parts = [[f"k-center: {d:.2f} from labeled/picked" if np.isfinite(d) else "k-center: first pick (most uncertain)"]
             for d in result.pick_distance]
    distance = None
    if init is not None:
        distance = init[np.searchsorted(rows, result.rows)]
    return Picks(result.rows, score, ["diverse"] * k, parts=parts, distance_to_labeled=distance)


def proportional_quota(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over groups in proportion to ``sizes`` (largest remainder, exact integers;
    ties: lowest group). Never exceeds a group's size when ``k <= sizes.sum()``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if total == 0 or k == 0:
        return np.zeros(len(sizes), dtype=np.int64)
    scaled = sizes * int(k)
    quota = scaled // total
    remainder = scaled % total
    leftover = int(k - quota.sum())
    if leftover:
        order = np.lexsort((np.arange(len(sizes)), -remainder))
        quota[order[:leftover]] += 1
    return quota


def auto_clusters(k: int) -> int:
    """Default number of clusters: about ten picks per cluster, between 2 and 256."""
    return int(np.clip(k // 10, 2, 256))


@strategy("cluster")
def cluster_strategy(pool: Pool, k: int, *, rng: np.random.Generator, seed: int, n_clusters: int = 0,
                     niter: int = 20) -> Picks:
    """FAISS k-means over the eligible embeddings; each cluster gets a share of the budget in
    proportion to its size and contributes its most uncertain frames. ``n_clusters`` 0 = auto
    (``auto_clusters``). Rank interleaves clusters; score = uncertainty; ``cluster`` = cluster id."""
    from active_learning.faiss_utils import kmeans

    emb = pool.require_embeddings("cluster")
    rows = pool.eligible_rows()
    n_clusters = int(n_clusters) or auto_clusters(k)
    _, assign = kmeans(emb, n_clusters, rows=rows, seed=seed, niter=niter)
    n_found = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=n_found)
    quota = proportional_quota(sizes, k)
    chosen, position, labels, parts = [], [], [], []
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(n_found + 1))
    for c in np.flatnonzero(quota):
        members = rows[order[bounds[c]:bounds[c + 1]]]
        top = top_uncertain(pool.uncertainty, np.sort(members), int(quota[c]))
        chosen.append(top)
        position.append((np.arange(len(top)) + 0.5) / quota[c])
        labels.append(np.full(len(top), c, dtype=np.int64))
        parts += [[f"cluster {c}: #{i + 1} most uncertain of {sizes[c]:,}"] for i in range(len(top))]
    chosen_rows = np.concatenate(chosen)
    # Interleave the clusters: every cluster's first pick comes before any cluster's second.
    rank = np.lexsort((chosen_rows, -pool.uncertainty[chosen_rows].astype(np.float64), np.concatenate(position)))
    parts = [parts[i] for i in rank]
    return Picks(chosen_rows[rank], pool.uncertainty[chosen_rows[rank]], ["cluster"] * k,
                 cluster=np.concatenate(labels)[rank], parts=parts,
                 stats={"clusters": n_found, "nonempty_clusters": int((sizes > 0).sum())})


@strategy("balance")
def balance_strategy(pool: Pool, k: int, *, rng: np.random.Generator, seed: int,
                     rare_classes: tuple[str, ...] = (), class_weights: dict | None = None) -> Picks:
    """Quota toward a target class distribution over *predicted* classes, so rare classes get
    found: each pick goes to the class furthest below its target share (uniform over the classes
    predicted anywhere in the eligible pool, or ``class_weights`` {name: weight}) and takes that
    class's most uncertain frame not yet picked. When no class has frames left the rest are the
    most uncertain frames. Score = uncertainty."""
    if pool.predicted_classes is None:
        raise InputError("strategy 'balance' needs predicted classes per frame (Pool.predicted_classes); score first")
    rows = pool.eligible_rows()
    present = pool.predicted_classes[rows] > 0  # (n, C)
    n_classes = present.shape[1]
    weights = np.where(present.any(axis=0), 1.0, 0.0)
    for name, weight in (class_weights or {}).items():
        if name not in pool.class_names:
            raise InputError(f"class_weights names {name!r}, which is not a class: {list(pool.class_names)}")
        weights[pool.class_names.index(name)] = float(weight) if present[:, pool.class_names.index(name)].any() else 0.0
    queues = [top_uncertain(pool.uncertainty, rows[present[:, c]], int(present[:, c].sum())) for c in range(n_classes)]
    pointer = np.zeros(n_classes, dtype=np.int64)
    have = np.zeros(n_classes, dtype=np.float64)
    taken = np.zeros(len(pool), dtype=bool)
    position = np.full(len(pool), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    picks, parts, total_weight = [], [], weights.sum()
    while len(picks) < k and total_weight > 0:
        for c in range(n_classes):  # drop frames already taken from the head of each queue
            while pointer[c] < len(queues[c]) and taken[queues[c][pointer[c]]]:
                pointer[c] += 1
        open_classes = np.array([pointer[c] < len(queues[c]) for c in range(n_classes)]) & (weights > 0)
        if not open_classes.any():
            break
        deficit = np.where(open_classes, weights / total_weight * (len(picks) + 1) - have, -np.inf)
        c = int(np.argmax(deficit))
        row = int(queues[c][pointer[c]])
        taken[row] = True
        picks.append(row)
        have += present[position[row]]
        parts.append([f"class quota: {pool.class_names[c]}"])
    if len(picks) < k:
        rest = top_uncertain(pool.uncertainty, rows[~taken[rows]], k - len(picks))
        picks += rest.tolist()
        parts += [["most uncertain (class quotas filled)"]] * len(rest)
    picked = np.array(picks, dtype=np.int64)
    return Picks(picked, pool.uncertainty[picked], ["balance"] * k, parts=parts,
                 stats={"class_counts": {pool.class_names[c]: int(have[c]) for c in range(n_classes)}})
