"""Near-duplicate collapse: frames closer than a cosine-distance threshold form one group, and only
the most informative member of each group (highest priority, e.g. uncertainty) is kept.

Two sources of candidate pairs, ordered for scale:

1. **temporal** -- same camera, captured less than ``window_s`` apart. On a belt most duplicates
   are neighbours in time (a stopped belt, a slow item), and these pairs are found over the whole
   pool in O(N x neighbours in the window): sort by (camera, time), compare each frame with the
   next ones until the window closes.
2. **global** -- any two rows of a candidate subset (FAISS range search; exact below
   ``faiss_utils.EXACT_RANGE_MAX_ROWS`` rows, IVF above). An all-pairs search over a million frames
   takes hours (RECIPES.md), so ``hybrid`` runs it on the uncertainty-prefiltered candidates only.

Groups are the connected components of the union of both pair sets. Index space: every row here
is a *pool row* (position in the arrays handed in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.errors import InputError

# Pairs compared per step of the temporal scan: bounds the gathered (chunk, D) temporaries.
TEMPORAL_CHUNK = 65_536


@dataclass
class DedupeResult:
    """Which row represents each row's near-duplicate group.

    ``representative`` ``(N,)`` int64: the pool row kept for each row's group; a row is kept iff
    ``representative[row] == row`` (singletons keep themselves). ``pairs_a``/``pairs_b``: the
    near-duplicate pairs found (``a < b``); ``temporal_pairs``/``global_pairs``: how many came from
    each stage (a pair found by both counts once, as temporal).
    """

    representative: np.ndarray
    pairs_a: np.ndarray
    pairs_b: np.ndarray
    temporal_pairs: int = 0
    global_pairs: int = 0

    @property
    def keep(self) -> np.ndarray:
        """``(N,)`` bool: rows that represent their group (or have none)."""
        return self.representative == np.arange(len(self.representative))

    @property
    def n_collapsed(self) -> int:
        """Rows dropped as a near-duplicate of a kept row."""
        return int((~self.keep).sum())

    def groups(self) -> list[np.ndarray]:
        """Groups of two or more rows, each as ``(m,)`` int64 pool rows, representative first."""
        dropped = np.flatnonzero(~self.keep)
        if len(dropped) == 0:
            return []
        reps = self.representative[dropped]
        order = np.lexsort((dropped, reps))
        dropped, reps = dropped[order], reps[order]
        cuts = np.flatnonzero(np.diff(reps)) + 1
        return [np.concatenate(([rep_members[0]], members)) for rep_members, members in
                zip(np.split(reps, cuts), np.split(dropped, cuts))]

    def duplicates_of(self, rows: np.ndarray) -> list[np.ndarray]:
        """For each given (kept) row, the ``(m,)`` int64 rows collapsed into it (itself excluded)."""
        rows = np.asarray(rows, dtype=np.int64)
        dropped = np.flatnonzero(~self.keep)
        reps = self.representative[dropped]
        order = np.argsort(reps, kind="stable")
        dropped, reps = dropped[order], reps[order]
        lo = np.searchsorted(reps, rows, side="left")
        hi = np.searchsorted(reps, rows, side="right")
        return [dropped[a:b] for a, b in zip(lo, hi)]


def factorize(labels) -> np.ndarray:
    """``(N,)`` int64 codes for any labels (camera names, ints); equal labels get equal codes."""
    array = np.asarray(labels)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    _, codes = np.unique(array.astype(str), return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def temporal_pairs(
    embeddings: np.ndarray,
    camera: np.ndarray,
    captured_at_s: np.ndarray,
    *,
    threshold: float,
    window_s: float,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of one camera captured less than ``window_s`` apart and closer than ``threshold``.

    ``embeddings`` ``(N, D)`` unit rows, ``camera`` ``(N,)`` int codes, ``captured_at_s`` ``(N,)``
    seconds (NaN = unknown: such rows pair with nothing). ``rows``: optional subset of pool rows to
    consider. Returns ``(rows_a, rows_b)`` with ``rows_a < rows_b``; strict ``<`` on both limits.
    """
    n = len(embeddings)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if threshold <= 0 or window_s <= 0 or n < 2:
        return empty
    times = np.asarray(captured_at_s, dtype=np.float64)
    cams = np.asarray(camera, dtype=np.int64)
    considered = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    considered = considered[np.isfinite(times[considered])]
    order = considered[np.lexsort((considered, times[considered], cams[considered]))]
    sorted_cam, sorted_t = cams[order], times[order]
    min_sim = np.float32(1.0 - threshold)
    parts_a, parts_b = [], []
    # `active` holds sorted positions i whose pair (i, i + offset) is still inside the window;
    # times are sorted inside a camera, so once (i, i + o) is out of the window, so is (i, i + o + 1).
    active = np.arange(len(order) - 1, dtype=np.int64)
    offset = 1
    while len(active):
        active = active[active + offset < len(order)]
        partner = active + offset
        inside = (sorted_cam[partner] == sorted_cam[active]) & (sorted_t[partner] - sorted_t[active] < window_s)
        active = active[inside]
        for start in range(0, len(active), TEMPORAL_CHUNK):
            i = order[active[start:start + TEMPORAL_CHUNK]]
            j = order[active[start:start + TEMPORAL_CHUNK] + offset]
            sims = np.einsum("ij,ij->i", embeddings[i], embeddings[j])
            close = sims > min_sim
            parts_a.append(np.minimum(i[close], j[close]))
            parts_b.append(np.maximum(i[close], j[close]))
        offset += 1
    if not parts_a:
        return empty
    return np.concatenate(parts_a), np.concatenate(parts_b)


def collapse(n: int, pairs_a: np.ndarray, pairs_b: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 representative of each row: the member of its connected component with the
    highest ``priority`` (ties: lowest row). Rows in no pair represent themselves."""
    representative = np.arange(n, dtype=np.int64)
    if len(pairs_a) == 0:
        return representative
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(np.concatenate([pairs_a, pairs_b]))
    ia = np.searchsorted(nodes, pairs_a)
    ib = np.searchsorted(nodes, pairs_b)
    m = len(nodes)
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(m, m)).tocsr()
    n_components, labels = connected_components(graph, directed=False)
    order = np.lexsort((nodes, -np.asarray(priority, dtype=np.float64)[nodes], labels))
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    best = np.empty(n_components, dtype=np.int64)
    best[labels[order][first]] = nodes[order][first]
    representative[nodes] = best[labels]
    return representative


def temporal_dedupe(
    embeddings: np.ndarray,
    priority: np.ndarray,
    camera: np.ndarray,
    captured_at_s: np.ndarray,
    *,
    threshold: float,
    window_s: float,
) -> DedupeResult:
    """Stage 1 over the whole pool: temporal pairs, collapsed by ``priority`` (higher = keep)."""
    a, b = temporal_pairs(embeddings, camera, captured_at_s, threshold=threshold, window_s=window_s)
    return DedupeResult(collapse(len(embeddings), a, b, priority), a, b, temporal_pairs=len(a))


def global_dedupe(
    embeddings: np.ndarray,
    priority: np.ndarray,
    rows: np.ndarray,
    *,
    threshold: float,
    previous: DedupeResult | None = None,
    method: str = "auto",
    seed: int = 0,
) -> DedupeResult:
    """Stage 2: all pairs among ``rows`` (FAISS range search), merged with ``previous`` groups."""
    from active_learning.faiss_utils import range_pairs

    a, b = range_pairs(embeddings, threshold, rows=np.asarray(rows, dtype=np.int64), method=method, seed=seed)
    n = len(embeddings)
    if previous is not None and len(previous.pairs_a):
        n_before = len(previous.pairs_a)
        key = np.unique(np.concatenate([previous.pairs_a * n + previous.pairs_b, a * n + b]))
        all_a, all_b = key // n, key % n
        n_global = len(key) - n_before
        temporal = previous.temporal_pairs
    else:
        all_a, all_b, n_global, temporal = a, b, len(a), 0
    return DedupeResult(collapse(n, all_a, all_b, priority), all_a, all_b,
                        temporal_pairs=temporal, global_pairs=n_global)


def dedupe(
    embeddings: np.ndarray,
    priority: np.ndarray,
    *,
    threshold: float,
    camera: np.ndarray | None = None,
    captured_at_s: np.ndarray | None = None,
    window_s: float = 0.0,
    global_rows: np.ndarray | str | None = "kept",
    method: str = "auto",
    seed: int = 0,
) -> DedupeResult:
    """Both stages: temporal over all rows (when ``camera`` and ``captured_at_s`` are given), then
    global among ``global_rows`` (``"kept"``: every row stage 1 kept; ``None``: skip stage 2).

    ``embeddings`` ``(N, D)`` float32 unit rows; ``priority`` ``(N,)``, higher = kept (use
    uncertainty; ``inf`` pins a row, e.g. an already-labeled frame, as its group's representative).
    """
    embeddings = np.asarray(embeddings)
    priority = np.asarray(priority, dtype=np.float64)
    n = len(embeddings)
    if priority.shape != (n,):
        raise InputError(f"priority has shape {priority.shape}, expected ({n},): one value per embedding row")
    if np.isnan(priority).any():
        raise InputError("priority contains NaN; give every row a number (higher = keep)")
    if camera is not None and captured_at_s is not None and window_s > 0:
        result = temporal_dedupe(embeddings, priority, factorize(camera), captured_at_s,
                                 threshold=threshold, window_s=window_s)
    else:
        empty = np.zeros(0, np.int64)
        result = DedupeResult(np.arange(n, dtype=np.int64), empty, empty)
    if global_rows is None:
        return result
    rows = np.flatnonzero(result.keep) if isinstance(global_rows, str) and global_rows == "kept" else global_rows
    return global_dedupe(embeddings, priority, rows, threshold=threshold, previous=result, method=method, seed=seed)
