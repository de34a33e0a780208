"""Naive references built from scikit-learn, for the side-by-side benchmark.

``patched()`` swaps the FAISS/numpy building blocks the strategies use for straightforward
scikit-learn versions, so the *same* strategy code (``hybrid``, ``coreset``) runs on naive
components and must produce the same selection:

- near-duplicates: ``NearestNeighbors(metric="cosine", algorithm="brute").radius_neighbors`` over
  every row considered (the whole pool for the temporal stage, whose pairs are then filtered by
  camera and time; the candidates for the global stage);
- k-center greedy: ``pairwise_distances(X, X[[pick]], metric="cosine")`` per pick (norms
  recomputed each time, a new distance column per pick, min-update over all rows);
- nearest labeled frame: ``pairwise_distances_argmin_min(metric="cosine")``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

RADIUS_CHUNK = 4_096


def naive_range_pairs(vectors, threshold, *, rows=None, method="auto", nprobe=0, seed=0, chunk=0):
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(vectors if rows is None else vectors[np.asarray(rows)], dtype=np.float32)
    n = len(x)
    if n < 2 or threshold <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nn = NearestNeighbors(radius=threshold, metric="cosine", algorithm="brute").fit(x)
    parts_a, parts_b = [], []
    for start in range(0, n, RADIUS_CHUNK):
        dist, found = nn.radius_neighbors(x[start:start + RADIUS_CHUNK], return_distance=True)
        for offset, (d, f) in enumerate(zip(dist, found)):
            i = start + offset
            keep = (f > i) & (d < threshold)  # strict, as in the fast path
            parts_a.append(np.full(int(keep.sum()), i, dtype=np.int64))
            parts_b.append(f[keep].astype(np.int64))
    a, b = np.concatenate(parts_a), np.concatenate(parts_b)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        a, b = rows[a], rows[b]
        a, b = np.minimum(a, b), np.maximum(a, b)
    return a, b


def naive_temporal_pairs(embeddings, camera, captured_at_s, *, threshold, window_s, rows=None):
    """All near-duplicate pairs of the whole pool, then keep those of one camera inside the window."""
    a, b = naive_range_pairs(embeddings, threshold)
    camera = np.asarray(camera)
    times = np.asarray(captured_at_s, dtype=np.float64)
    inside = (camera[a] == camera[b]) & (np.abs(times[a] - times[b]) < window_s)
    inside &= np.isfinite(times[a]) & np.isfinite(times[b])
    return a[inside], b[inside]


def naive_nearest_distance(queries, base, *, rows=None, chunk=0):
    from sklearn.metrics import pairwise_distances_argmin_min

    q = np.asarray(queries if rows is None else queries[np.asarray(rows)], dtype=np.float32)
    out = np.full(len(q), np.inf, dtype=np.float32)
    if base is None or len(base) == 0 or len(q) == 0:
        return out
    _, dist = pairwise_distances_argmin_min(q, np.asarray(base, dtype=np.float32), metric="cosine")
    return np.maximum(dist, 0).astype(np.float32)


def naive_kcenter_greedy(vectors, k, *, rows=None, init_distance=None, first=None, frontier=None):
    from sklearn.metrics import pairwise_distances

    from active_learning.faiss_utils import KCenterResult

    x = np.asarray(vectors if rows is None else vectors[np.asarray(rows)], dtype=np.float32)
    n = len(x)
    k = min(k, n)
    mindist = np.full(n, np.inf, np.float32) if init_distance is None else np.asarray(init_distance, np.float32).copy()
    picked = np.zeros(n, dtype=bool)
    picks, dists = [], []
    for step in range(k):
        if step == 0 and first is not None:
            pick = int(first)
        else:
            pick = int(np.argmax(np.where(picked, -np.inf, mindist)))
        picks.append(pick)
        dists.append(mindist[pick])
        picked[pick] = True
        column = pairwise_distances(x, x[[pick]], metric="cosine")[:, 0]
        mindist = np.minimum(mindist, column)
    picks = np.array(picks, dtype=np.int64)
    out_rows = picks if rows is None else np.asarray(rows, dtype=np.int64)[picks]
    return KCenterResult(out_rows, np.array(dists, dtype=np.float32))


@contextmanager
def patched() -> Iterator[None]:
    """Run the selection code on the naive components (see the module docstring)."""
    import active_learning.dedupe as dedupe
    import active_learning.faiss_utils as faiss_utils

    saved = (dedupe.temporal_pairs, faiss_utils.range_pairs, faiss_utils.nearest_distance, faiss_utils.kcenter_greedy)
    dedupe.temporal_pairs = naive_temporal_pairs
    faiss_utils.range_pairs = naive_range_pairs
    faiss_utils.nearest_distance = naive_nearest_distance
    faiss_utils.kcenter_greedy = naive_kcenter_greedy
    try:
        yield
    finally:
        dedupe.temporal_pairs, faiss_utils.range_pairs, faiss_utils.nearest_distance, faiss_utils.kcenter_greedy = saved
