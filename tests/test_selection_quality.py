"""Selection-quality measures: detector errors per frame, rare objects, near-duplicate share."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.selection_quality import (
    compare_to_random, dhash64, frame_errors, frame_truth, hamming_matrix, measure_selection,
    near_duplicate_share,
)
from active_learning.detectors import Detections

GT = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float)
GT_LABELS = np.array([0, 1])


def test_a_perfect_prediction_has_no_errors():
    assert frame_errors(GT, GT_LABELS, [0.9, 0.8], GT, GT_LABELS) == (0, 0)


def test_a_missed_box_and_a_false_box_are_counted():
    pred = np.array([[0, 0, 10, 10], [100, 100, 120, 120]], float)
    assert frame_errors(pred, [0, 1], [0.9, 0.9], GT, GT_LABELS) == (1, 1)


def test_wrong_class_is_a_miss_and_a_false_box():
    assert frame_errors(GT[:1], [1], [0.9], GT[:1], GT_LABELS[:1]) == (1, 1)


def test_low_scores_do_not_count_and_iou_below_half_does_not_match():
    assert frame_errors(GT, GT_LABELS, [0.1, 0.1], GT, GT_LABELS, score_thresh=0.3) == (2, 0)
    shifted = GT[:1] + np.array([6, 0, 6, 0])  # IoU 4x10 / (2*100 - 40) = 0.25
    assert frame_errors(shifted, [0], [0.9], GT[:1], GT_LABELS[:1]) == (1, 1)


def test_a_duplicate_prediction_is_one_match_and_one_false_box():
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 11]], float)
    assert frame_errors(pred, [0, 0], [0.9, 0.8], GT[:1], GT_LABELS[:1]) == (0, 1)


def test_empty_frames():
    assert frame_errors(np.zeros((0, 4)), [], [], GT, GT_LABELS) == (2, 0)
    assert frame_errors(GT, GT_LABELS, [0.9, 0.9], np.zeros((0, 4)), []) == (0, 2)


def test_dhash_finds_near_identical_images_and_separates_different_ones():
    rng = np.random.default_rng(0)
    base = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    base = np.repeat(np.repeat(base[::6, ::8], 6, axis=0), 8, axis=1)[:60, :80]  # blocky, like a scene
    noisy = np.clip(base.astype(int) + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)
    other = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    hashes = np.array([dhash64(base), dhash64(noisy), dhash64(other)], np.uint64)
    dist = hamming_matrix(hashes)
    assert dist[0, 1] <= 10 < dist[0, 2]
    assert near_duplicate_share(hashes, np.array([0, 1, 2])) == pytest.approx(2 / 3)
    assert near_duplicate_share(hashes, np.array([0, 2])) == 0.0


def test_hamming_matrix_counts_bits():
    hashes = np.array([0, 1, 3, 2**64 - 1], np.uint64)
    dist = hamming_matrix(hashes)
    assert dist[0, 1] == 1 and dist[0, 2] == 2 and dist[1, 2] == 1 and dist[0, 3] == 64 and dist[3, 3] == 0


def test_frame_truth_and_measures():
    det_good = Detections(GT, GT_LABELS, [0.9, 0.9])
    det_bad = Detections(np.zeros((0, 4)), [], [])
    truth = frame_truth([det_good, det_bad], [(GT, GT_LABELS), (GT, np.array([1, 7]))], rare_class_ids=[7])
    assert truth.errors.tolist() == [0, 2] and truth.rare_objects.tolist() == [0, 1]
    hashes = np.array([0, 2**64 - 1], np.uint64)
    m = measure_selection(np.array([1]), truth, hashes)
    assert m["errors_per_frame"] == 2.0 and m["rare_objects_per_frame"] == 1.0 and m["near_duplicate_share"] == 0.0
    both = measure_selection(np.array([0, 1]), truth, hashes)
    assert both["errors_per_frame"] == 1.0 and both["rare_frames_share"] == 0.5


def test_compare_to_random_ratios():
    base = {"missed_per_frame": 1, "false_per_frame": 1, "rare_objects_per_frame": 0.1, "rare_frames_share": 0.1,
            "near_duplicate_share": 0.4}
    per_seed = {"random": [{**base, "errors_per_frame": 2.0}, {**base, "errors_per_frame": 4.0}],
                "hybrid": [{**base, "errors_per_frame": 6.0, "near_duplicate_share": 0.1},
                           {**base, "errors_per_frame": 6.0, "near_duplicate_share": 0.1}]}
    out = compare_to_random(per_seed)
    assert out["hybrid"]["errors_per_frame"]["ratio_vs_random"] == pytest.approx(2.0)
    assert out["hybrid"]["near_duplicate_share"]["ratio_vs_random"] == pytest.approx(0.25)
    assert out["random"]["errors_per_frame"] == {"mean": 3.0, "std": 1.0, "ratio_vs_random": 1.0}
