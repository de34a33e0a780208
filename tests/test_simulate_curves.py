"""Curve math of the simulation: area under the learning curve, labels to reach a target, summaries."""

from __future__ import annotations

import math

import pytest

from active_learning.simulate import curve_auc, labels_to_reach, summarize


def test_auc_of_a_constant_curve_is_the_constant():
    assert curve_auc([100, 140, 180], [0.4, 0.4, 0.4]) == pytest.approx(0.4)


def test_auc_is_the_trapezoid_mean_over_the_range():
    # (0.2 + 0.4) / 2 * 40 + (0.4 + 0.8) / 2 * 40 = 12 + 24 = 36 over 80 labels
    assert curve_auc([100, 140, 180], [0.2, 0.4, 0.8]) == pytest.approx(36 / 80)


def test_auc_weights_uneven_spacing():
    assert curve_auc([0, 10, 100], [0.0, 1.0, 1.0]) == pytest.approx((5 + 90) / 100)


def test_auc_single_point_and_bad_input():
    assert curve_auc([100], [0.3]) == 0.3
    with pytest.raises(ValueError):
        curve_auc([100, 100], [0.1, 0.2])
    with pytest.raises(ValueError):
        curve_auc([100, 140], [0.1])


def test_labels_to_reach_interpolates_between_rounds():
    # 0.5 at 140, 0.7 at 180 -> 0.6 is reached half-way, at 160
    assert labels_to_reach([100, 140, 180], [0.3, 0.5, 0.7], 0.6) == pytest.approx(160.0)


def test_labels_to_reach_exact_hit_first_point_and_never():
    assert labels_to_reach([100, 140, 180], [0.3, 0.5, 0.7], 0.5) == pytest.approx(140.0)
    assert labels_to_reach([100, 140, 180], [0.6, 0.5, 0.7], 0.55) == 100.0
    assert labels_to_reach([100, 140, 180], [0.3, 0.5, 0.7], 0.71) is None


def test_labels_to_reach_uses_the_first_crossing_of_a_non_monotone_curve():
    assert labels_to_reach([0, 10, 20, 30], [0.0, 1.0, 0.0, 1.0], 0.5) == pytest.approx(5.0)


def _records(strategy, seed, values, start=100, step=40):
    return [{"strategy": strategy, "seed": seed, "round": r, "labeled": start + r * step, "map50": v, "map": v / 2,
             "rare_ap50": v / 4} for r, v in enumerate(values)]


def test_summarize_label_efficiency_against_random():
    rounds = (_records("random", 0, [0.2, 0.3, 0.4]) + _records("random", 1, [0.2, 0.3, 0.4])
              + _records("hybrid", 0, [0.2, 0.4, 0.5]) + _records("hybrid", 1, [0.2, 0.4, 0.5]))
    summary = summarize(rounds, ["random", "hybrid"])
    assert summary["seeds_used"] == [0, 1] and summary["rounds_used"] == 2
    hybrid, random = summary["strategies"]["hybrid"]["map50"], summary["strategies"]["random"]["map50"]
    assert random["labels_to_reference_final"] == pytest.approx(180.0)
    assert random["label_ratio_vs_reference"] == pytest.approx(1.0)
    assert hybrid["labels_to_reference_final"] == pytest.approx(140.0)  # 0.4 reached in round 1
    assert hybrid["label_ratio_vs_reference"] == pytest.approx(140 / 180, abs=1e-3)
    assert hybrid["added_label_ratio_vs_reference"] == pytest.approx(40 / 80, abs=1e-3)
    assert hybrid["auc_mean"] > random["auc_mean"]


def test_summarize_mean_and_spread_over_seeds():
    rounds = _records("random", 0, [0.2, 0.4]) + _records("random", 1, [0.2, 0.6])
    entry = summarize(rounds, ["random"])["strategies"]["random"]["map50"]
    assert entry["mean"] == pytest.approx([0.2, 0.5])
    assert entry["std"] == pytest.approx([0.0, 0.1])


def test_summarize_compares_only_rounds_every_strategy_finished():
    # An interrupted run: hybrid of seed 1 stopped after round 1; seed 1 counts up to round 1.
    rounds = (_records("random", 0, [0.2, 0.3, 0.4]) + _records("hybrid", 0, [0.2, 0.4, 0.5])
              + _records("random", 1, [0.2, 0.3, 0.4]) + _records("hybrid", 1, [0.2, 0.4]))
    summary = summarize(rounds, ["random", "hybrid"])
    assert summary["rounds_used"] == 1
    assert summary["strategies"]["random"]["map50"]["labeled"] == [100.0, 140.0]


def test_summarize_a_strategy_that_never_reaches_random():
    rounds = _records("random", 0, [0.2, 0.5]) + _records("coreset", 0, [0.2, 0.3])
    entry = summarize(rounds, ["random", "coreset"])["strategies"]["coreset"]["map50"]
    assert entry["labels_to_reference_final"] is None and entry["label_ratio_vs_reference"] is None
    assert not math.isnan(entry["auc_mean"])
