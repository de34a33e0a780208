"""hybrid: near-duplicates collapsed, uncertainty prefilter, diversity, rare quota, exploration."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.selection import Pool, select, top_uncertain
from benchmarks.selection.synthetic import make_pool
from curation.errors import InputError


@pytest.fixture(scope="module")
def synthetic():
    return make_pool(6000, dim=32, seed=3, dup_fraction=0.3)


def planted_duplicates(group: np.ndarray, rows: np.ndarray) -> int:
    groups = group[rows]
    groups = groups[groups >= 0]
    return len(groups) - len(np.unique(groups))


def test_no_two_picks_from_one_planted_group(synthetic):
    pool = synthetic.pool()
    hybrid = select(pool, 300, "hybrid", seed=0)
    assert planted_duplicates(synthetic.group, hybrid.pool_rows) == 0
    assert hybrid.stats["near_duplicates_collapsed"] > 0
    assert hybrid.stats["temporal_pairs"] > 0 and hybrid.stats["global_pairs"] > 0
    # without the dedupe stages, k-center still avoids near-copies; k-means (one pick per cluster)
    # avoids most of them; with neither, the picks are full of them
    alone = {diversity: planted_duplicates(synthetic.group, select(pool, 300, "hybrid", seed=0, diversity=diversity,
                                                                    dedupe_threshold=0.0).pool_rows)
             for diversity in ("kcenter", "kmeans", "none")}
    assert alone["kcenter"] <= 3 and alone["kmeans"] * 4 < alone["none"], alone
    undiversified = select(pool, 300, "hybrid", seed=0, diversity="none")
    assert planted_duplicates(synthetic.group, undiversified.pool_rows) == 0
    # plain top-k falls for the repeated uncertain items
    plain = select(pool, 300, "uncertainty", seed=0)
    assert planted_duplicates(synthetic.group, plain.pool_rows) > 10


def test_stage_shares_follow_the_settings(synthetic):
    result = select(synthetic.pool(), 200, "hybrid", seed=0, explore_fraction=0.1, rare_quota=0.2)
    stages = result.stats["stages"]
    assert stages["explore"] == 20
    assert stages["fill"] == 0
    rare_rows = (synthetic.predicted_classes[result.pool_rows, -1] > 0).sum()
    assert rare_rows >= 40, "the rare quota guarantees 20% of the picks have a predicted battery"
    assert stages["diverse"] + stages["rare"] == 180
    # ranks interleave the stages: the first 50 ranks hold about a quarter of the explore picks
    assert 3 <= result.stage[:50].count("explore") <= 7


def test_rare_quota_comes_back_to_diversity_when_no_rare_class_is_predicted(synthetic):
    result = select(synthetic.pool(), 100, "hybrid", seed=0, rare_classes=("not-a-class",))
    assert result.stats["stages"]["rare"] == 0
    assert result.stats["stages"]["diverse"] == 95


def test_diverse_picks_come_from_the_uncertainty_prefilter(synthetic):
    pool = synthetic.pool()
    result = select(pool, 100, "hybrid", seed=0, explore_fraction=0.0, rare_quota=0.0, prefilter_factor=2)
    assert set(result.stage) == {"diverse"}
    # every pick is at least as uncertain as the 2 x 100 x (1 + duplicates) most uncertain eligible rows
    bound = top_uncertain(pool.uncertainty, pool.eligible_rows(), 600)[-1]
    assert np.all(pool.uncertainty[result.pool_rows] >= pool.uncertainty[bound])
    assert "diverse among the" in result.reasons[0]


def test_diversity_spreads_picks_over_clusters(synthetic):
    pool = synthetic.pool()
    common = dict(seed=0, explore_fraction=0.0, rare_quota=0.0, prefilter_factor=4)
    kcenter = select(pool, 60, "hybrid", diversity="kcenter", **common)
    none = select(pool, 60, "hybrid", diversity="none", **common)
    nearest = lambda rows: np.sort(pool.embeddings[rows] @ pool.embeddings[rows].T, axis=1)[:, -2]  # noqa: E731
    assert np.median(nearest(kcenter.pool_rows)) < np.median(nearest(none.pool_rows))
    kpp = select(pool, 60, "hybrid", diversity="kmeanspp", **common)
    assert len(kpp) == 60
    kmeans = select(pool, 60, "hybrid", diversity="kmeans", **common)
    assert len(set(kmeans.pool_rows.tolist())) == 60
    assert np.median(nearest(kmeans.pool_rows)) < np.median(nearest(none.pool_rows))
    # one pick per cluster, the most uncertain of its cluster: more uncertain than farthest-first
    assert pool.uncertainty[kmeans.pool_rows].mean() > pool.uncertainty[kcenter.pool_rows].mean()


def test_near_duplicates_of_labeled_frames_are_not_selected():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    x[1] = x[0] + 0.001  # row 1 is row 0 half a second later; row 0 is already labeled
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pool = Pool(uncertainty=np.array([0.1, 0.99, 0.5, 0.4, 0.3, 0.2]), embeddings=x,
                camera=np.zeros(6), captured_at_s=np.arange(6) * 0.5,
                eligible=np.array([False, True, True, True, True, True]))
    result = select(pool, 3, "hybrid", explore_fraction=0, rare_quota=0)
    assert 1 not in result.pool_rows


def test_fill_when_the_deduplicated_pool_runs_dry():
    rng = np.random.default_rng(0)
    base = rng.standard_normal(8).astype(np.float32)
    x = base + 0.001 * rng.standard_normal((10, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pool = Pool(uncertainty=np.linspace(0, 1, 10), embeddings=x)
    result = select(pool, 5, "hybrid", seed=0)
    assert len(result) == 5
    assert result.stage.count("fill") == 4
    assert result.stage[-1] == "fill"
    assert "fill (deduplicated pool exhausted)" in result.reasons[-1]
    assert len(result.duplicates[0]) == 9


def test_reasons_explain_each_pick(synthetic):
    result = select(synthetic.pool(), 300, "hybrid", seed=0)
    reasons = " | ".join(result.reasons)
    assert "% entropy_sum" in reasons
    assert "from nearest labeled" in reasons
    assert "predicted battery (rare)" in reasons
    assert "near-duplicate" in reasons
    assert "exploration (random draw)" in reasons
    with_dups = [r for r, d in zip(result.reasons, result.duplicates) if len(d)]
    assert with_dups and all("stands for" in r for r in with_dups)
    assert np.all(np.isfinite(result.distance_to_labeled))


def test_ivf_dedupe_method_runs_and_keeps_the_contract(synthetic):
    result = select(synthetic.pool(), 100, "hybrid", seed=0, dedupe_method="ivf")
    assert len(np.unique(result.pool_rows)) == 100
    assert planted_duplicates(synthetic.group, result.pool_rows) == 0


@pytest.mark.parametrize("params, message", [
    ({"prefilter_factor": 0.5}, "prefilter_factor must be >= 1"),
    ({"explore_fraction": 1.5}, "explore_fraction must be between 0 and 1"),
    ({"explore_fraction": 0.6, "rare_quota": 0.6}, "must be <= 1"),
    ({"diversity": "dpp"}, "valid: kcenter, kmeans, kmeanspp, none"),
    ({"dedupe_threshold": 3.0}, "dedupe_threshold"),
])
def test_bad_parameters(params, message):
    pool = Pool(uncertainty=np.ones(3), embeddings=np.eye(3, dtype=np.float32))
    with pytest.raises(InputError, match=message):
        select(pool, 2, "hybrid", **params)


def test_pool_validation_errors():
    with pytest.raises(InputError, match="unit L2-norm"):
        Pool(uncertainty=np.ones(2), embeddings=np.ones((2, 3), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        Pool(uncertainty=np.array([0.1, np.nan]))
    with pytest.raises(InputError, match=r"expected \(2, D\)"):
        Pool(uncertainty=np.ones(2), embeddings=np.eye(3, dtype=np.float32))
    with pytest.raises(InputError, match="eligible has 3 entries"):
        Pool(uncertainty=np.ones(2), eligible=np.ones(3, bool))
    with pytest.raises(InputError, match="not in class_names"):
        Pool(uncertainty=np.ones(1), predicted_classes=[["plutonium"]], class_names=["paper"])
    listed = Pool(uncertainty=np.ones(2), predicted_classes=[["paper", "paper"], []], class_names=["paper", "glass"])
    assert listed.predicted_classes.tolist() == [[2, 0], [0, 0]]
