"""FAISS helpers over L2-normalized float32 vectors: nearest distances, near-duplicate pairs,
k-center greedy and k-means.

Every distance here is a *cosine distance*, ``1 - cos(a, b)``, in ``[0, 2]``; inputs must be unit
rows (``active_learning.embeddings.l2_normalize``). For unit rows ``||a - b||^2 = 2 * cosine``,
so the farthest-first order of k-center is the same in either metric.

Index spaces: a *row* is a position in the array handed in. Callers that work on a subset pass
``rows=`` (positions in the full array) and get positions in the full array back.

faiss is imported inside the functions, so importing this module is free.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from curation.errors import InputError

# Tunables (one place). Raising EXACT_RANGE_MAX_ROWS keeps near-duplicate search exact on larger
# candidate sets at O(n^2) cost (40k rows: ~3 s on 2 cores; 1M rows: hours).
EXACT_RANGE_MAX_ROWS = 65_536
# IVF cells probed per query above that size; near-duplicates sit in the same or an adjacent cell,
# so a few probes find nearly all of them (recall is measured in benchmarks/selection).
IVF_NPROBE = 16
# Queries per FAISS call: bounds the size of the result buffers.
QUERY_CHUNK = 8_192
# k-center keeps exact distances only for a frontier of the farthest rows (see _kcenter_lazy).
# Below KCENTER_LAZY_MIN_ROWS one plain matrix-vector product per pick is as fast. A larger
# frontier means fewer rebuilds (each one partitions all n values) but a larger product per pick;
# measured on 2 cores, 8,000-10,000 picks: 1,024 rows beat 512..8,192 at 40k, 200k and 1M rows.
KCENTER_LAZY_MIN_ROWS = 16_384
KCENTER_FRONTIER = 1_024
# Centers per GEMM when a row rejoins the frontier: bounds the temporary (frontier x this) matrix.
_REFRESH_CENTERS = 1_024


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise InputError("selection needs FAISS: pip install faiss-cpu") from exc
    return faiss


def as_unit_rows(vectors, name: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous ``(N, D)`` float32 array (no copy when it already is one)."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise InputError(f"{name} must be a (N, D) array, got shape {array.shape}")
    if array.dtype != np.float32 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.float32)
    return array


def _take(vectors: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return vectors if rows is None else np.ascontiguousarray(vectors[rows])


def nearest_distance(queries, base, *, rows: np.ndarray | None = None, chunk: int = QUERY_CHUNK) -> np.ndarray:
    """``(Q,)`` float32 cosine distance from each query row to its nearest ``base`` row (exact).

    ``rows``: query only these rows of ``queries`` (gathered chunk by chunk, no full copy).
    ``+inf`` for every query when ``base`` is empty.
    """
    queries = as_unit_rows(queries, "queries")
    n_queries = len(queries) if rows is None else len(rows)
    dim = queries.shape[1]
    base = as_unit_rows(base, "base") if base is not None else np.zeros((0, dim), np.float32)
    out = np.full(n_queries, np.inf, dtype=np.float32)
    if len(base) == 0 or n_queries == 0:
        return out
    if base.shape[1] != dim:
        raise InputError(f"queries are {dim}-d but base vectors are {base.shape[1]}-d")
    faiss = _faiss()
    index = faiss.IndexFlatIP(dim)
    index.add(base)
    for start in range(0, n_queries, chunk):
        part = queries[start:start + chunk] if rows is None else queries[rows[start:start + chunk]]
        sims, _ = index.search(np.ascontiguousarray(part), 1)
        out[start:start + chunk] = np.maximum(0.0, 1.0 - sims[:, 0])
    return out


def knn(queries, base, k: int, *, chunk: int = QUERY_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN: ``(distances (Q, k) float32, base_rows (Q, k) int64)``, nearest first.

    Missing neighbours (``k > len(base)``) have distance ``inf`` and row ``-1``.
    """
    queries = as_unit_rows(queries, "queries")
    base = as_unit_rows(base, "base")
    faiss = _faiss()
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sims, found = index.search(queries[start:start + chunk], k)
        valid = found >= 0
        dist[start:start + chunk] = np.where(valid, np.maximum(0.0, 1.0 - sims), np.inf)
        rows[start:start + chunk] = found
    return dist, rows


def range_pairs(
    vectors,
    threshold: float,
    *,
    rows: np.ndarray | None = None,
    method: str = "auto",
    nprobe: int = IVF_NPROBE,
    seed: int = 0,
    chunk: int = QUERY_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs closer than ``threshold`` (cosine distance, strict ``<``): ``(rows_a, rows_b)``.

    Each unordered pair appears once with ``rows_a < rows_b``; rows are positions in ``vectors``
    (or the entries of ``rows`` when a subset is searched). ``method``: ``exact`` (flat index,
    O(n^2)), ``ivf`` (IVF-Flat, ``nprobe`` cells per query, approximate) or ``auto`` (exact up to
    ``EXACT_RANGE_MAX_ROWS`` rows).
    """
    vectors = as_unit_rows(vectors)
    subset = _take(vectors, rows)
    n = len(subset)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if n < 2 or threshold <= 0:
        return empty
    if method == "auto":
        method = "exact" if n <= EXACT_RANGE_MAX_ROWS else "ivf"
    if method not in {"exact", "ivf"}:
        raise InputError(f"unknown range search method {method!r}; valid: auto, exact, ivf")
    faiss = _faiss()
    dim = subset.shape[1]
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(max(16, min(4 * np.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train_rows = np.sort(rng.choice(n, size=min(n, nlist * 64), replace=False))
        index.cp.seed = seed
        index.train(subset[train_rows])
        index.nprobe = min(nprobe, nlist)
    index.add(subset)
    # FAISS returns inner products strictly above the radius: sim > 1 - threshold <=> dist < threshold.
    radius = float(1.0 - threshold)
    parts_a, parts_b = [], []
    for start in range(0, n, chunk):
        lims, _sims, found = index.range_search(subset[start:start + chunk], radius)
        counts = np.diff(lims.astype(np.int64))
        query = np.repeat(np.arange(start, start + len(counts), dtype=np.int64), counts)
        found = found.astype(np.int64)
        keep = query != found
        parts_a.append(np.minimum(query[keep], found[keep]))
        parts_b.append(np.maximum(query[keep], found[keep]))
    a = np.concatenate(parts_a)
    b = np.concatenate(parts_b)
    if len(a):
        # Each pair is usually found from both ends (always, with the exact index): keep it once.
        key = np.unique(a * n + b)
        a, b = key // n, key % n
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        a, b = rows[a], rows[b]
        swap = a > b
        a, b = np.where(swap, b, a), np.where(swap, a, b)
    return a, b


@dataclass
class KCenterResult:
    """k-center greedy picks, in pick order.

    ``rows`` ``(k,)`` int64: positions in the vectors handed in (or entries of ``rows=``).
    ``pick_distance`` ``(k,)`` float32: cosine distance of each pick to the nearest seed or earlier
    pick at the moment it was picked (``inf`` for a first pick without seeds); non-increasing.
    """

    rows: np.ndarray
    pick_distance: np.ndarray


def kcenter_greedy(
    vectors,
    k: int,
    *,
    rows: np.ndarray | None = None,
    init_distance: np.ndarray | None = None,
    first: int | None = None,
    frontier: int | str = "auto",
) -> KCenterResult:
    """Farthest-first traversal: each pick is the row farthest from all seeds and earlier picks.

    ``vectors``: ``(N, D)`` unit rows. ``rows``: optional subset (positions in ``vectors``) to pick
    from. ``init_distance``: ``(n,)`` cosine distance of each candidate to the nearest seed
    (already-labeled frame; see ``nearest_distance``), ``inf`` = no seed. ``first``: position
    (within the candidates) to pick first instead of the farthest. Ties go to the lowest position.

    Exact: the same picks as a brute-force greedy in float64 (similarities are accumulated in
    float64 whatever the path, so results do not depend on ``frontier``). ``frontier``: rows kept exact
    per pick in the lazy variant (``0`` = plain loop, one full matrix-vector product per pick;
    ``"auto"`` = lazy from ``KCENTER_LAZY_MIN_ROWS`` rows).
    """
    vectors = as_unit_rows(vectors)
    cand_rows = None if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(vectors) if cand_rows is None else len(cand_rows)
    k = int(min(max(k, 0), n))
    # Track the best cosine *similarity* to any center: the farthest row has the smallest one.
    # float64 similarities: every code path (per-pick products, refresh GEMMs, the plain loop)
    # then agrees far below float32 resolution, so the picks do not depend on the path taken.
    if init_distance is None:
        best_sim = np.full(n, -np.inf, dtype=np.float64)
    else:
        init_distance = np.asarray(init_distance, dtype=np.float64)
        if init_distance.shape != (n,):
            raise InputError(f"init_distance has shape {init_distance.shape}, expected ({n},) (one per candidate)")
        best_sim = np.where(np.isinf(init_distance), -np.inf, 1.0 - init_distance)
    if k == 0:
        return KCenterResult(np.zeros(0, np.int64), np.zeros(0, np.float32))
    if frontier == "auto":
        frontier = 0 if n < KCENTER_LAZY_MIN_ROWS else KCENTER_FRONTIER
    with single_blas_thread():
        if frontier:
            picks, dists = _kcenter_lazy(vectors, cand_rows, best_sim, k, first, int(frontier))
        else:
            picks, dists = _kcenter_plain(_take(vectors, cand_rows), best_sim, k, first)
    out_rows = picks if cand_rows is None else cand_rows[picks]
    return KCenterResult(out_rows.astype(np.int64), dists)


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run matrix-vector products on one BLAS thread.

    One product per pick is too small to split: on the shared 2-core machines two BLAS threads
    made each product 4x slower than one (measured: 40k x 128 float32, 2.9 ms vs 0.77 ms).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _sim_to_dist(sim: float) -> float:
    return float("inf") if sim == -np.inf else max(0.0, 1.0 - float(sim))


def _kcenter_plain(x: np.ndarray, best_sim: np.ndarray, k: int, first: int | None):
    n = len(x)
    x = x.astype(np.float64)  # small inputs only (see KCENTER_LAZY_MIN_ROWS)
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float32)
    sims = np.empty(n, dtype=np.float64)  # reused buffer: one matrix-vector product per pick
    for step in range(k):
        pick = int(first) if (step == 0 and first is not None) else int(np.argmin(best_sim))
        picks[step] = pick
        dists[step] = _sim_to_dist(best_sim[pick])
        np.dot(x, x[pick], out=sims)
        np.maximum(best_sim, sims, out=best_sim)
        best_sim[pick] = np.inf  # picked rows are never picked again
    return picks, dists


def _kcenter_lazy(vectors, cand_rows, best_sim, k, first, frontier):
    """Exact farthest-first with a lazily refreshed frontier.

    ``best_sim`` only grows as centers are added, so a stale value is a lower bound of the true
    one. The rows with the ``frontier`` smallest stale values are refreshed (one GEMM against the
    centers they missed) and then kept exact with one small matrix-vector product per pick. Every
    other row has a stale value above the frontier's bound ``tau``, so its true value is above
    ``tau`` too: while the frontier's minimum is ``<= tau``, it is the global minimum. When it is
    not, the frontier is rebuilt from the stale values. Rows far from the frontier are never
    touched again, which is where the time goes in the plain loop.
    """
    n = len(best_sim)
    dim = vectors.shape[1]

    def gather(positions: np.ndarray) -> np.ndarray:
        rows = vectors[positions] if cand_rows is None else vectors[cand_rows[positions]]
        return rows.astype(np.float64)

    centers = np.empty((k, dim), dtype=np.float64)
    applied = np.zeros(n, dtype=np.int64)  # centers already folded into best_sim, per row
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float32)
    # The frontier keeps its own exact values (front_sim) so a pick touches only frontier-sized
    # contiguous arrays; they are written back to best_sim when the frontier is rebuilt.
    front = np.zeros(0, dtype=np.int64)  # candidate positions, ascending (ties -> lowest position)
    front_x = np.zeros((0, dim), dtype=np.float64)
    front_sim = np.zeros(0, dtype=np.float64)
    tau = -np.inf

    def rebuild(n_centers: int, n_left: int):
        nonlocal front, front_x, front_sim, tau
        if len(front):
            best_sim[front] = front_sim
            applied[front] = n_centers
        m = min(frontier, n_left)
        tau = float(np.partition(best_sim, m - 1)[m - 1])
        front = np.flatnonzero(best_sim <= tau)
        stale = front[applied[front] < n_centers]
        if len(stale):
            lo = int(applied[stale].min())
            stale_x = gather(stale)
            fresh = best_sim[stale]
            for c0 in range(lo, n_centers, _REFRESH_CENTERS):
                block = stale_x @ centers[c0:min(n_centers, c0 + _REFRESH_CENTERS)].T
                np.maximum(fresh, block.max(axis=1), out=fresh)
            best_sim[stale] = fresh
            applied[stale] = n_centers
        front_x = np.ascontiguousarray(gather(front))
        front_sim = best_sim[front]

    sims = np.empty(0, dtype=np.float64)
    for step in range(k):
        at = -1
        if step == 0 and first is not None:
            j = int(first)
        elif step == 0 and np.isneginf(best_sim).any():
            j = int(np.argmin(best_sim))  # no seeds: the lowest position, as in the plain loop
        else:
            while True:
                if len(front):
                    at = int(np.argmin(front_sim))
                    if front_sim[at] <= tau:
                        j = int(front[at])
                        break
                rebuild(step, n - step)
                sims = np.empty(len(front), dtype=np.float64)
        picks[step] = j
        dists[step] = _sim_to_dist(front_sim[at] if at >= 0 else best_sim[j])
        centers[step] = vectors[j] if cand_rows is None else vectors[cand_rows[j]]
        best_sim[j] = np.inf
        applied[j] = step + 1
        if at >= 0:
            front_sim[at] = np.inf
            np.dot(front_x, centers[step], out=sims)
            np.maximum(front_sim, sims, out=front_sim)
        if step == 0 and np.isneginf(best_sim).any():
            # Rows without any seed have no finite value yet: give every row its distance to the
            # first center (one pass), so the frontier starts from finite lower bounds.
            for start in range(0, n, 65_536):
                stop = min(n, start + 65_536)
                part = best_sim[start:stop]
                np.maximum(part, gather(np.arange(start, stop)) @ centers[0], out=part)
            applied[:] = 1
            best_sim[j] = np.inf
    return picks, dists


def kcenter_bruteforce(vectors, k: int, *, init_distance=None, first: int | None = None) -> KCenterResult:
    """Reference farthest-first traversal in float64 numpy, O(k * n * D); for tests only."""
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    k = min(k, n)
    dist = np.full(n, np.inf) if init_distance is None else np.asarray(init_distance, dtype=np.float64).copy()
    picked = np.zeros(n, dtype=bool)
    rows, dists = [], []
    for step in range(k):
        masked = np.where(picked, -np.inf, dist)
        pick = int(first) if (step == 0 and first is not None) else int(np.argmax(masked))
        rows.append(pick)
        dists.append(dist[pick])
        picked[pick] = True
        d = 1.0 - x @ x[pick]  # cosine distance
        dist = np.minimum(dist, d)
    return KCenterResult(np.array(rows, dtype=np.int64), np.array(dists, dtype=np.float32))


def kmeans(
    vectors,
    k: int,
    *,
    rows: np.ndarray | None = None,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 256,
    spherical: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means: ``(centroids (k, D) float32, assignment (n,) int64)``.

    Trains on at most ``k * max_points_per_centroid`` rows sampled with ``seed`` and then assigns
    every row (of ``rows``, when given) to its nearest centroid, exactly (L2). ``k`` is capped at
    the number of rows. Deterministic for a seed.
    """
    x = as_unit_rows(vectors)
    n = len(x) if rows is None else len(rows)
    dim = x.shape[1]
    k = int(max(1, min(k, n)))

    def gather(start: int, stop: int) -> np.ndarray:
        return x[start:stop] if rows is None else np.ascontiguousarray(x[rows[start:stop]])

    if k == 1:
        total = np.zeros(dim, dtype=np.float64)
        for start in range(0, n, 65_536):
            total += gather(start, start + 65_536).sum(axis=0)
        return (total / max(n, 1)).astype(np.float32)[None, :], np.zeros(n, dtype=np.int64)
    faiss = _faiss()
    n_train = min(n, k * max_points_per_centroid)
    rng = np.random.default_rng(seed)
    train_pos = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else np.arange(n)
    train = np.ascontiguousarray(x[train_pos] if rows is None else x[rows[train_pos]])
    km = faiss.Kmeans(dim, k, niter=niter, seed=seed, spherical=spherical, verbose=False,
                      max_points_per_centroid=max_points_per_centroid, min_points_per_centroid=1)
    km.train(train)
    del train
    assign = np.empty(n, dtype=np.int64)
    for start in range(0, n, 65_536):
        _, found = km.index.search(gather(start, start + 65_536), 1)
        assign[start:start + 65_536] = found[:, 0]
    return np.asarray(km.centroids, dtype=np.float32), assign


def kmeanspp_seeding(
    vectors,
    k: int,
    *,
    rng: np.random.Generator,
    rows: np.ndarray | None = None,
    init_distance: np.ndarray | None = None,
) -> KCenterResult:
    """k-means++ seeding relative to seeds: each pick is drawn with probability proportional to
    its squared euclidean distance to the nearest seed or earlier pick (the randomized cousin of
    k-center: diverse, but less drawn to outliers). Same arguments and result as ``kcenter_greedy``;
    without seeds the first pick is uniform. Deterministic for the ``rng`` state.
    """
    x = _take(as_unit_rows(vectors), None if rows is None else np.asarray(rows, dtype=np.int64))
    n = len(x)
    k = int(min(max(k, 0), n))
    best_sim = (np.full(n, -np.inf, dtype=np.float32) if init_distance is None
                else np.where(np.isinf(init_distance), -np.inf, 1.0 - np.asarray(init_distance, np.float32)).astype(np.float32))
    picks = np.empty(k, dtype=np.int64)
    dists = np.empty(k, dtype=np.float32)
    sims = np.empty(n, dtype=np.float32)
    with single_blas_thread():
        for step in range(k):
            if np.isneginf(best_sim).all():
                pick = int(rng.integers(n))
            else:
                weight = np.where(np.isneginf(best_sim), 4.0, np.maximum(2.0 - 2.0 * best_sim, 0.0))
                weight[best_sim == np.inf] = 0.0  # picked
                positive = np.flatnonzero(weight > 0)
                if len(positive) == 0:  # everything left duplicates a pick: take the lowest position
                    pick = int(np.flatnonzero(best_sim != np.inf)[0])
                else:
                    cumulative = np.cumsum(weight[positive], dtype=np.float64)
                    at = np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")
                    pick = int(positive[min(at, len(positive) - 1)])
            picks[step] = pick
            dists[step] = _sim_to_dist(best_sim[pick])
            np.dot(x, x[pick], out=sims)
            np.maximum(best_sim, sims, out=best_sim)
            best_sim[pick] = np.inf
    out_rows = picks if rows is None else np.asarray(rows, dtype=np.int64)[picks]
    return KCenterResult(out_rows, dists)
