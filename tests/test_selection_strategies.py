"""Every strategy keeps the selection contract (hypothesis): exactly min(budget, eligible) unique
rows, never an ineligible one, the same result for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from active_learning.selection import STRATEGIES, Pool, select, strategy_params
from active_learning.selection.strategies import proportional_quota, top_uncertain
from curation.errors import InputError, UnknownNameError

CLASSES = ["cardboard", "paper", "glass", "battery"]


def make_pool(seed: int, n: int, *, eligible_share: float = 0.8, n_labeled: int = 5, dup_share: float = 0.3,
              with_classes: bool = True) -> Pool:
    rng = np.random.default_rng(seed)
    d = 8
    x = rng.standard_normal((n, d)).astype(np.float32)
    # some rows are near-copies of earlier rows (same camera, next timestamps)
    dups = np.flatnonzero(rng.random(n) < dup_share)
    dups = dups[dups > 0]
    x[dups] = x[dups - 1] + 0.001 * rng.standard_normal((len(dups), d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labeled = rng.standard_normal((n_labeled, d)).astype(np.float32)
    labeled /= np.linalg.norm(labeled, axis=1, keepdims=True)
    counts = rng.poisson(0.7, (n, len(CLASSES))).astype(np.int32)
    counts[:, -1] = rng.random(n) < 0.05
    # coarse uncertainty values: many ties
    return Pool(
        uncertainty=np.round(rng.random(n), 1).astype(np.float32),
        embeddings=x,
        labeled_embeddings=labeled,
        predicted_classes=counts if with_classes else None,
        class_names=CLASSES,
        camera=rng.integers(0, 2, n),
        captured_at_s=np.arange(n, dtype=np.float64) * 0.5,
        eligible=rng.random(n) < eligible_share,
    )


@pytest.mark.parametrize("name", STRATEGIES.names())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 150), budget=st.integers(0, 160),
       eligible_share=st.sampled_from([0.0, 0.3, 1.0]))
def test_contract(name, seed, n, budget, eligible_share):
    pool = make_pool(seed, n, eligible_share=eligible_share)
    result = select(pool, budget, name, seed=seed)
    k = min(budget, int(pool.eligible.sum()))
    assert len(result.pool_rows) == k
    assert len(np.unique(result.pool_rows)) == k
    assert pool.eligible[result.pool_rows].all()
    assert result.pool_rows.dtype == np.int64
    for per_item in (result.score, result.uncertainty, result.distance_to_labeled, result.cluster, result.stage,
                     result.reasons, result.duplicates):
        assert len(per_item) == k
    assert all(reason for reason in result.reasons)
    again = select(pool, budget, name, seed=seed)
    np.testing.assert_array_equal(result.pool_rows, again.pool_rows)
    assert result.reasons == again.reasons


@pytest.mark.parametrize("name", ["random", "hybrid", "cluster"])
def test_seed_changes_the_randomized_strategies(name):
    pool = make_pool(1, 400, dup_share=0.0)
    a = select(pool, 50, name, seed=1)
    b = select(pool, 50, name, seed=2)
    assert not np.array_equal(a.pool_rows, b.pool_rows)


def test_uncertainty_is_top_k_with_lowest_row_ties():
    u = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5], dtype=np.float32)
    pool = Pool(uncertainty=u, eligible=np.array([True, True, True, False, True, True]))
    result = select(pool, 3, "uncertainty")
    assert result.pool_rows.tolist() == [1, 0, 2]
    assert top_uncertain(u, np.arange(6), 4).tolist() == [1, 3, 0, 2]


def test_coreset_fills_gaps_of_the_labeled_set():
    # four tight clusters; two are already labeled: the first two picks land in the other two
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:4]
    x = np.repeat(centers, 25, axis=0) + 0.01 * rng.standard_normal((100, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pool = Pool(uncertainty=rng.random(100), embeddings=x, labeled_embeddings=centers[:2])
    result = select(pool, 2, "coreset")
    assert sorted(result.pool_rows // 25) == [2, 3]
    assert np.all(result.distance_to_labeled > 0.9)


def test_cluster_shares_follow_cluster_sizes():
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:2]
    x = np.concatenate([np.repeat(centers[:1], 300, 0), np.repeat(centers[1:], 100, 0)])
    x = x + 0.01 * rng.standard_normal(x.shape).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pool = Pool(uncertainty=rng.random(400), embeddings=x)
    result = select(pool, 40, "cluster", n_clusters=2)
    big = int((result.pool_rows < 300).sum())
    assert big == 30
    assert set(result.cluster.tolist()) == {0, 1}
    # within a cluster the picks are its most uncertain frames
    small_rows = result.pool_rows[result.pool_rows >= 300]
    expected = 300 + np.argsort(-pool.uncertainty[300:], kind="stable")[:10]
    assert sorted(small_rows.tolist()) == sorted(expected.tolist())


def test_proportional_quota_is_exact():
    assert proportional_quota(np.array([300, 100]), 40).tolist() == [30, 10]
    assert proportional_quota(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    quota = proportional_quota(np.array([5, 0, 7, 1]), 13)
    assert quota.tolist() == [5, 0, 7, 1]


def test_balance_finds_the_rare_class():
    rng = np.random.default_rng(0)
    n = 1000
    counts = np.zeros((n, 4), dtype=np.int32)
    counts[:, 0] = 1  # everything has cardboard
    battery_rows = rng.choice(n, 10, replace=False)
    counts[battery_rows, 3] = 1
    u = rng.random(n).astype(np.float32)
    u[battery_rows] = 0.01  # and the detector is confident about them: uncertainty alone misses them
    pool = Pool(uncertainty=u, predicted_classes=counts, class_names=CLASSES)
    result = select(pool, 20, "balance")
    assert set(battery_rows) <= set(result.pool_rows.tolist())
    assert not set(battery_rows) & set(select(pool, 20, "uncertainty").pool_rows.tolist())
    assert any("predicted battery (rare)" in r for r in result.reasons)
    weighted = select(pool, 20, "balance", class_weights={"battery": 0.0})
    assert not set(battery_rows) & set(weighted.pool_rows.tolist())


def test_balance_needs_predicted_classes():
    with pytest.raises(InputError, match="predicted classes"):
        select(Pool(uncertainty=np.ones(3)), 2, "balance")


@pytest.mark.parametrize("name", ["coreset", "cluster", "hybrid"])
def test_strategies_that_need_embeddings_say_so(name):
    with pytest.raises(InputError, match="needs embeddings"):
        select(Pool(uncertainty=np.ones(3)), 2, name)


def test_unknown_strategy_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as info:
        select(Pool(uncertainty=np.ones(3)), 2, "smart")
    assert str(info.value) == ("unknown selection strategy 'smart'; valid: "
                               "balance, cluster, coreset, hybrid, random, uncertainty")


def test_unknown_parameter_is_refused_with_the_valid_ones():
    with pytest.raises(InputError, match="unknown parameter.*prefilter_factor.*valid: min_distance_to_labeled"):
        select(Pool(uncertainty=np.ones(3)), 2, "random", prefilter_factor=4)
    assert "prefilter_factor" in strategy_params("hybrid")
    assert "rare_classes" in strategy_params("random")


def test_min_distance_to_labeled_excludes_close_frames():
    x = np.eye(4, dtype=np.float32)
    near = (x[0] + 0.05 * x[1]) / np.linalg.norm(x[0] + 0.05 * x[1])
    emb = np.stack([near, x[1], x[2], x[3]]).astype(np.float32)
    pool = Pool(uncertainty=np.array([1.0, 0.5, 0.4, 0.3]), embeddings=emb, labeled_embeddings=x[:1])
    result = select(pool, 4, "uncertainty", min_distance_to_labeled=0.1)
    assert 0 not in result.pool_rows and len(result) == 3
    assert result.stats["excluded_near_labeled"] == 1


@pytest.mark.parametrize("budget", [-1, 2.5, True])
def test_bad_budget(budget):
    with pytest.raises(InputError, match="budget"):
        select(Pool(uncertainty=np.ones(3)), budget, "random")
