"""Uncertainty scores: ranges, directions (more ambiguous -> higher), edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.detectors import Detections
from active_learning.uncertainty import (
    AGGREGATIONS,
    EMPTY_FRAME_UNCERTAINTY,
    MEASURES,
    NEEDS_FLIP,
    UNCERTAINTY,
    box_distributions,
    box_entropy,
    box_least_confidence,
    box_margin,
    class_difficulty_weights,
    compute_scores,
)
from curation.errors import InputError, UnknownNameError

C = 3  # foreground classes in these tests


def softmax_det(probs_rows, boxes=None) -> Detections:
    """Detections whose softmax rows are given (background last); label/score = best foreground."""
    probs = np.asarray(probs_rows, dtype=np.float64)
    labels = probs[:, :C].argmax(axis=1)
    scores = probs[np.arange(len(probs)), labels]
    boxes = boxes if boxes is not None else [[10 * i, 10, 10 * i + 8, 18] for i in range(len(probs))]
    return Detections(boxes, labels, scores, probs, None, "softmax")


def mix(probs, toward_uniform: float) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    return (1 - toward_uniform) * probs + toward_uniform / probs.shape[-1]


CONFIDENT = [0.9, 0.04, 0.03, 0.03]


def test_registry_lists_every_measure_aggregation_and_rejects_unknown_names():
    names = UNCERTAINTY.names()
    for measure in MEASURES:
        for how in AGGREGATIONS:
            assert f"{measure}_{how}" in names
    assert {"entropy_weighted_sum", "no_confident_detection", "flip_instability"} <= set(names)
    with pytest.raises(UnknownNameError, match="entropy_sum"):
        UNCERTAINTY.get("entropy_total")


def test_box_measures_are_zero_for_one_hot_and_one_for_uniform():
    q = np.array([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    for fn in (box_entropy, box_least_confidence, box_margin):
        np.testing.assert_allclose(fn(q), [0.0, 1.0], atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(st.lists(st.floats(0.01, 1.0), min_size=C + 1, max_size=C + 1), min_size=1, max_size=5),
    step=st.floats(0.05, 0.9),
)
def test_more_ambiguous_predictions_score_higher_for_every_measure_and_aggregation(raw, step):
    """Mixing every box's distribution toward uniform never lowers a score, and raises it unless already uniform."""
    probs = np.asarray(raw) / np.asarray(raw).sum(axis=1, keepdims=True)
    probs[0] = CONFIDENT  # keep one confident detection so the empty-frame floor does not apply
    before = softmax_det(probs)
    after_probs = probs.copy()
    after_probs[1:] = mix(probs[1:], step)
    after_probs[0] = mix([CONFIDENT], step * 0.1)[0]
    after = Detections(before.boxes_xyxy_px, before.labels, np.maximum(before.scores, 0.5), after_probs, None, "softmax")
    before = Detections(before.boxes_xyxy_px, before.labels, np.maximum(before.scores, 0.5), probs, None, "softmax")
    s_before = compute_scores([before], n_classes=C)
    s_after = compute_scores([after], n_classes=C)
    for name in [f"{m}_{a}" for m in MEASURES for a in AGGREGATIONS] + ["entropy_weighted_sum"]:
        assert s_after[name][0] > s_before[name][0] - 1e-12, name
    assert s_after["entropy_sum"][0] > s_before["entropy_sum"][0]


def test_two_class_confusion_beats_confident_prediction_for_sigmoid_models():
    confused = Detections([[0, 0, 10, 10]], [0], [0.55], [[0.55, 0.5, 0.02]], None, "sigmoid")
    sure = Detections([[0, 0, 10, 10]], [0], [0.95], [[0.95, 0.02, 0.02]], None, "sigmoid")
    scores = compute_scores([confused, sure], n_classes=C)
    for name in ("entropy_sum", "margin_max", "least_confidence_mean"):
        assert scores[name][0] > scores[name][1], name


def test_sigmoid_distribution_has_background_last_and_sums_to_one():
    det = Detections([[0, 0, 10, 10]], [1], [0.8], [[0.1, 0.8, 0.3]], None, "sigmoid")
    q = box_distributions(det, C)
    assert q.shape == (1, C + 1)
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    assert q[0, -1] == pytest.approx(0.2 / 1.4)


def test_top_score_only_predictions_still_rank_by_doubt():
    sure = Detections([[0, 0, 5, 5]], [2], [0.97], None, None, None)
    doubtful = Detections([[0, 0, 5, 5]], [2], [0.55], None, None, None)
    scores = compute_scores([sure, doubtful], n_classes=C)
    assert scores["entropy_sum"][1] > scores["entropy_sum"][0]


def test_frames_without_confident_detections_rank_above_confident_frames():
    empty = Detections.empty(C + 1)
    faint = softmax_det([[0.2, 0.05, 0.05, 0.7]])  # best foreground 0.2 < CONFIDENT_SCORE
    clean = softmax_det([[0.97, 0.01, 0.01, 0.01]] * 2)
    scores = compute_scores([empty, faint, clean], n_classes=C)
    for name in ("entropy_sum", "entropy_max", "margin_mean"):
        assert scores[name][0] == pytest.approx(EMPTY_FRAME_UNCERTAINTY)
        assert scores[name][1] >= EMPTY_FRAME_UNCERTAINTY
        assert scores[name][2] < EMPTY_FRAME_UNCERTAINTY
    np.testing.assert_allclose(scores["no_confident_detection"], [1.0, 0.8, 0.03], atol=1e-6)


def test_low_score_boxes_are_ignored_by_min_box_score():
    confident = softmax_det([CONFIDENT])
    with_noise = softmax_det([CONFIDENT, [0.02, 0.01, 0.01, 0.96]])
    a = compute_scores([confident, with_noise], n_classes=C, min_box_score=0.05)
    assert a["entropy_sum"][0] == pytest.approx(a["entropy_sum"][1])
    b = compute_scores([confident, with_noise], n_classes=C, min_box_score=0.0)
    assert b["entropy_sum"][1] > b["entropy_sum"][0]


def test_class_difficulty_weighting_counts_hard_classes_more():
    hard_box = softmax_det([[0.05, 0.05, 0.6, 0.3]])  # class 2
    easy_box = softmax_det([[0.6, 0.05, 0.05, 0.3]])  # class 0, same entropy
    uniform = compute_scores([hard_box, easy_box], n_classes=C)
    np.testing.assert_allclose(uniform["entropy_weighted_sum"], uniform["entropy_sum"])
    weights = class_difficulty_weights(["a", "b", "c"], per_class_ap={"a": 0.9, "b": 0.8, "c": 0.2})
    assert weights.mean() == pytest.approx(1.0)
    assert weights[2] > weights[1] > weights[0]
    weighted = compute_scores([hard_box, easy_box], n_classes=C, class_weights=weights)["entropy_weighted_sum"]
    assert weighted[0] > weighted[1]


def test_class_weights_from_counts_favour_rare_classes_and_validate_shape():
    weights = class_difficulty_weights(["a", "b", "c"], class_counts={"a": 1000, "b": 100, "c": 5})
    assert weights[2] > weights[1] > weights[0]
    np.testing.assert_array_equal(class_difficulty_weights(["a", "b"]), [1.0, 1.0])
    with pytest.raises(InputError, match="class_weights"):
        compute_scores([softmax_det([CONFIDENT])], n_classes=C, class_weights=np.ones(2))


def test_flip_instability_grows_as_the_flipped_pass_disagrees():
    det = softmax_det([CONFIDENT, CONFIDENT], boxes=[[10, 10, 50, 50], [60, 10, 90, 40]])
    same = det
    shifted = Detections([[14, 10, 54, 50], [60, 10, 90, 40]], det.labels, det.scores, det.probs, None, "softmax")
    missing = Detections([[14, 10, 54, 50]], det.labels[:1], det.scores[:1], det.probs[:1], None, "softmax")
    scores = compute_scores([det, det, det], n_classes=C, flipped=[same, shifted, missing],
                            names=["flip_instability"])["flip_instability"]
    assert scores[0] == pytest.approx(0.0)
    assert 0.0 < scores[1] < scores[2] <= 1.0


def test_flip_scores_need_the_flipped_pass():
    det = softmax_det([CONFIDENT])
    assert not NEEDS_FLIP & set(compute_scores([det], n_classes=C))
    with pytest.raises(InputError, match="tta_flip"):
        compute_scores([det], n_classes=C, names=["flip_instability"])


def test_hflip_mirrors_boxes_and_back():
    det = softmax_det([CONFIDENT], boxes=[[10, 5, 30, 25]])
    flipped = det.hflip(100)
    np.testing.assert_allclose(flipped.boxes_xyxy_px, [[70, 5, 90, 25]])
    np.testing.assert_allclose(flipped.hflip(100).boxes_xyxy_px, det.boxes_xyxy_px)


def test_wrong_probability_width_is_a_clear_error():
    det = Detections([[0, 0, 1, 1]], [0], [0.9], [[0.9, 0.1]], None, "softmax")
    with pytest.raises(InputError, match="C\\+1"):
        compute_scores([det], n_classes=C)
