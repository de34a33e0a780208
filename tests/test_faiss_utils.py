"""FAISS helpers against brute-force numpy on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.faiss_utils import (
    kcenter_bruteforce,
    kcenter_greedy,
    kmeans,
    kmeanspp_seeding,
    knn,
    nearest_distance,
    range_pairs,
)
from curation.errors import InputError


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, d: int, n_clusters: int = 5, sigma: float = 0.3) -> np.ndarray:
    centers = unit(rng, n_clusters, d)
    x = centers[rng.integers(0, n_clusters, n)] + sigma * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_trace(x: np.ndarray, k: int, init: np.ndarray | None, first: int | None):
    """Brute-force farthest-first in float64, with the gap between the best and second-best
    candidate at each step (k-center works in float64 too, so only a gap at float64 rounding
    level may make either pick correct)."""
    x64 = x.astype(np.float64)
    dist = np.full(len(x), np.inf) if init is None else init.astype(np.float64).copy()
    picked = np.zeros(len(x), bool)
    rows, gaps = [], []
    for step in range(min(k, len(x))):
        masked = np.where(picked, -np.inf, dist)
        order = np.argsort(-masked, kind="stable")
        pick = int(first) if (step == 0 and first is not None) else int(order[0])
        second = masked[order[1]] if len(order) > 1 else -np.inf
        if (step == 0 and first is not None) or np.isinf(masked[order[0]]):
            gaps.append(np.inf)  # forced pick, or an all-unseeded start: the lowest row by rule
        else:
            gaps.append(masked[order[0]] - second)
        rows.append(pick)
        picked[pick] = True
        dist = np.minimum(dist, 1.0 - x64 @ x64[pick])  # cosine distance, the documented metric
    return np.array(rows), np.array(gaps)


def assert_same_until_near_tie(ours: np.ndarray, rows: np.ndarray, gaps: np.ndarray, tol: float = 1e-9) -> None:
    """Rows must be equal up to (and excluding) the first step whose best-vs-second gap is a near tie."""
    near = np.flatnonzero(gaps < tol)
    stop = int(near[0]) if len(near) else len(rows)
    np.testing.assert_array_equal(ours[:stop], rows[:stop])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120), d=st.integers(2, 12), k=st.integers(0, 130), n_labeled=st.integers(0, 6),
    seed=st.integers(0, 10_000), frontier=st.sampled_from([0, 1, 4, 32]), use_first=st.booleans(),
)
def test_kcenter_equals_bruteforce(n, d, k, n_labeled, seed, frontier, use_first):
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, d)
    init = nearest_distance(x, unit(rng, n_labeled, d)) if n_labeled else None
    first = int(rng.integers(n)) if use_first else None
    ours = kcenter_greedy(x, k, init_distance=init, first=first, frontier=frontier)
    rows, gaps = brute_trace(x, k, init, first)
    assert len(ours.rows) == min(k, n) == len(np.unique(ours.rows))
    assert_same_until_near_tie(ours.rows, rows, gaps)
    after_first = ours.pick_distance[1 if use_first else 0:]  # a forced first pick may be close
    finite = after_first[np.isfinite(after_first)]
    assert np.all(np.diff(finite) <= 1e-5), "pick distances must not increase"


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 200), k=st.integers(1, 60), seed=st.integers(0, 1000))
def test_kcenter_on_a_subset_returns_pool_rows(n, k, seed):
    rng = np.random.default_rng(seed)
    x = clustered(rng, n, 6)
    subset = np.sort(rng.choice(n, size=max(1, n // 2), replace=False))
    ours = kcenter_greedy(x, k, rows=subset, frontier=8)
    sub_rows, gaps = brute_trace(x[subset], k, None, None)
    assert set(ours.rows) <= set(subset)
    assert_same_until_near_tie(ours.rows, subset[sub_rows], gaps)


def test_kcenter_lazy_frontier_equals_plain_loop_on_a_larger_pool():
    rng = np.random.default_rng(3)
    x = clustered(rng, 3000, 16, n_clusters=30, sigma=0.2)
    init = nearest_distance(x, x[:20])
    plain = kcenter_greedy(x, 300, init_distance=init, frontier=0)
    lazy = kcenter_greedy(x, 300, init_distance=init, frontier=64)
    np.testing.assert_array_equal(plain.rows, lazy.rows)
    np.testing.assert_allclose(plain.pick_distance, lazy.pick_distance, atol=1e-6)


def test_kcenter_ties_go_to_the_lowest_row_and_duplicates_come_last():
    x = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)  # rows 0,1 / 2,3 / 4,5 are identical
    result = kcenter_greedy(x, 6, frontier=0)
    assert result.rows[:3].tolist() == [0, 2, 4]
    assert sorted(result.rows[3:].tolist()) == [1, 3, 5]
    assert np.all(result.pick_distance[3:] < 1e-6)
    bf = kcenter_bruteforce(x, 3)
    assert bf.rows.tolist() == [0, 2, 4]


def test_kcenter_seeded_with_labeled_skips_what_is_covered():
    x = np.eye(4, dtype=np.float32)
    labeled_dist = nearest_distance(x, x[[0, 1]])  # rows 0 and 1 are already labeled
    result = kcenter_greedy(x, 2, init_distance=labeled_dist)
    assert sorted(result.rows.tolist()) == [2, 3]
    np.testing.assert_allclose(result.pick_distance, [1.0, 1.0], atol=1e-6)


def test_kcenter_rejects_misaligned_init_distance():
    with pytest.raises(InputError, match="init_distance"):
        kcenter_greedy(np.eye(3, dtype=np.float32), 2, init_distance=np.zeros(2))


@settings(max_examples=30, deadline=None)
@given(nq=st.integers(1, 50), nb=st.integers(0, 50), d=st.integers(2, 10), seed=st.integers(0, 1000))
def test_nearest_distance_and_knn_equal_numpy(nq, nb, d, seed):
    rng = np.random.default_rng(seed)
    q, b = unit(rng, nq, d), unit(rng, nb, d)
    got = nearest_distance(q, b)
    if nb == 0:
        assert np.all(np.isinf(got))
        return
    expected = 1.0 - (q @ b.T).max(axis=1)
    np.testing.assert_allclose(got, np.maximum(expected, 0), atol=1e-5)
    rows = np.array([2, 0]) if nq > 2 else None
    if rows is not None:
        np.testing.assert_allclose(nearest_distance(q, b, rows=rows), got[rows], atol=1e-6)
    k = min(3, nb + 1)
    dist, found = knn(q, b, k)
    order = np.argsort(-(q @ b.T), axis=1, kind="stable")[:, : min(k, nb)]
    np.testing.assert_allclose(dist[:, : min(k, nb)], 1.0 - np.take_along_axis(q @ b.T, order, 1), atol=1e-5)
    if k > nb:
        assert np.all(found[:, nb:] == -1) and np.all(np.isinf(dist[:, nb:]))


def brute_pairs(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    a, b = np.nonzero(np.triu(1.0 - sims < threshold, k=1))
    return set(zip(a.tolist(), b.tolist()))


def with_duplicates(rng, n, d, n_dups, scale=0.02):
    x = unit(rng, n, d)
    src = rng.integers(0, n, n_dups)
    dups = x[src] + scale * rng.standard_normal((n_dups, d)).astype(np.float32)
    x = np.concatenate([x, dups / np.linalg.norm(dups, axis=1, keepdims=True)])
    return np.ascontiguousarray(x[rng.permutation(len(x))])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 80), d=st.integers(2, 16), n_dups=st.integers(0, 30), seed=st.integers(0, 1000),
       threshold=st.sampled_from([0.01, 0.05, 0.2]))
def test_range_pairs_exact_equals_bruteforce(n, d, n_dups, seed, threshold):
    rng = np.random.default_rng(seed)
    x = with_duplicates(rng, max(n, 1), d, n_dups)
    a, b = range_pairs(x, threshold, method="exact")
    assert np.all(a < b)
    got = set(zip(a.tolist(), b.tolist()))
    expected = brute_pairs(x, threshold)
    # pairs within float32 rounding of the threshold may land on either side
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    borderline = {(i, j) for i, j in got ^ expected if abs(1.0 - sims[i, j] - threshold) < 1e-5}
    assert got ^ expected == borderline


def test_range_pairs_on_a_subset_reports_pool_rows():
    rng = np.random.default_rng(0)
    x = unit(rng, 10, 8)
    x[7] = x[3]
    a, b = range_pairs(x, 0.05, rows=np.array([1, 3, 7, 9]))
    assert list(zip(a.tolist(), b.tolist())) == [(3, 7)]
    a, b = range_pairs(x, 0.05, rows=np.array([1, 3, 9]))
    assert len(a) == 0


def test_range_pairs_ivf_finds_planted_duplicates():
    rng = np.random.default_rng(1)
    x = clustered(rng, 6000, 32, n_clusters=40, sigma=0.15)
    src = rng.choice(len(x), 400, replace=False)
    dups = x[src] + 0.01 * rng.standard_normal((400, 32)).astype(np.float32)
    x = np.concatenate([x, dups / np.linalg.norm(dups, axis=1, keepdims=True)])
    exact = set(zip(*[v.tolist() for v in range_pairs(x, 0.05, method="exact")]))
    ivf = set(zip(*[v.tolist() for v in range_pairs(x, 0.05, method="ivf", nprobe=8)]))
    assert ivf <= exact, "IVF may miss pairs but never invents one"
    assert len(ivf) >= 0.95 * len(exact) and len(exact) >= 400


def test_range_pairs_rejects_unknown_method():
    with pytest.raises(InputError, match="valid: auto, exact, ivf"):
        range_pairs(np.eye(3, dtype=np.float32), 0.1, method="hnsw")


def test_kmeans_is_deterministic_and_assigns_to_the_nearest_centroid():
    rng = np.random.default_rng(0)
    x = clustered(rng, 2000, 16, n_clusters=8, sigma=0.1)
    c1, a1 = kmeans(x, 8, seed=5)
    c2, a2 = kmeans(x, 8, seed=5)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_allclose(c1, c2)
    nearest = np.argmin(((x[:, None, :] - c1[None]) ** 2).sum(-1), axis=1)
    assert (nearest == a1).mean() > 0.999
    rows = np.arange(0, 2000, 3)
    _, a_sub = kmeans(x, 8, rows=rows, seed=5)
    assert a_sub.shape == rows.shape and a_sub.max() < 8
    _, one = kmeans(x, 1)
    assert np.all(one == 0)


def test_kmeanspp_is_deterministic_unique_and_avoids_labeled_points():
    rng = np.random.default_rng(0)
    x = clustered(rng, 500, 8, n_clusters=5, sigma=0.05)
    init = nearest_distance(x, x[:50])
    r1 = kmeanspp_seeding(x, 40, rng=np.random.default_rng(3), init_distance=init)
    r2 = kmeanspp_seeding(x, 40, rng=np.random.default_rng(3), init_distance=init)
    np.testing.assert_array_equal(r1.rows, r2.rows)
    assert len(np.unique(r1.rows)) == 40
    assert not set(r1.rows.tolist()) & set(range(50)), "a labeled point is at distance 0: weight 0"
    everything = kmeanspp_seeding(x[:20], 25, rng=np.random.default_rng(1))
    assert sorted(everything.rows.tolist()) == list(range(20))
