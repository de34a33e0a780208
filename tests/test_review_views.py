"""Saved error views return exactly the expected frames on a constructed case (real mongod)."""

from __future__ import annotations

import pytest

from tests.support.review_case import EXPECTED_VIEWS, IN_DATASET, review_case, review_settings  # noqa: F401

pytestmark = pytest.mark.fiftyone


def test_saved_views_return_the_expected_frames(sqlite_catalog, review_settings, review_case):
    from curation.review import VIEW_NAMES, build_review_dataset, open_review_dataset, view_frame_ids

    summary = build_review_dataset(sqlite_catalog, review_settings, embeddings=review_case.embeddings)
    assert set(VIEW_NAMES) == set(EXPECTED_VIEWS)
    got = {name: [review_case.name_of(f) for f in view_frame_ids(review_settings, name)] for name in VIEW_NAMES}
    assert got == EXPECTED_VIEWS
    assert summary.views == {name: len(frames) for name, frames in EXPECTED_VIEWS.items()}

    dataset = open_review_dataset(review_settings)
    # The views filter labels too: the false-positive frame shows only the false positive.
    fp_view = dataset.load_saved_view("false-positives")
    assert [d.label for d in fp_view.first().predictions.detections] == ["pet_bottle"]
    # The low-confidence false positive exists but sits below review.fp_min_confidence.
    lowfp = dataset.match({"frame_id": review_case.frame_ids["lowfp"]}).first()
    assert sorted(d["eval"] for d in lowfp.predictions.detections) == ["fp", "tp"]


def test_false_positive_threshold_is_a_setting(sqlite_catalog, review_settings, review_case, monkeypatch):
    from curation.review import build_review_dataset, view_frame_ids
    from curation.settings import load_settings

    monkeypatch.setenv("BELTCURATE_REVIEW_FP_MIN_CONFIDENCE", "0.05")
    settings = load_settings()
    build_review_dataset(sqlite_catalog, settings, embeddings=review_case.embeddings)
    names = {review_case.name_of(f) for f in view_frame_ids(settings, "false-positives")}
    assert names == {"fp", "lowfp"}


def test_evaluation_and_similarity(sqlite_catalog, review_settings, review_case):
    from curation.review import build_review_dataset, open_review_dataset

    summary = build_review_dataset(sqlite_catalog, review_settings, embeddings=review_case.embeddings)
    assert summary.evaluated == 6  # labeled frames with predictions
    assert summary.mAP is not None and 0.0 < summary.mAP < 1.0
    assert summary.per_class["aluminum_can"]["support"] == 2  # tp + loose
    assert summary.per_class["paper"]["recall"] == 0.0
    assert summary.near_duplicate_frames == 2
    assert summary.similarity_frames == len(IN_DATASET)

    dataset = open_review_dataset(review_settings)
    index = dataset.load_brain_results("similarity")
    query = dataset.match({"frame_id": review_case.frame_ids["u_low"]}).first().id
    nearest = index.sort_by_similarity(query, k=2)
    assert [review_case.name_of(f) for f in nearest.values("frame_id")] == ["u_low", "u_high"]


def test_class_agnostic_matching_agrees_with_fiftyone(review_settings):
    """match_any_boxes (computed when samples are written) == FiftyOne's classwise=False evaluation."""
    import numpy as np

    from curation.fomongo import ensure_fiftyone_database
    from curation.review import _detections, match_any_boxes

    ensure_fiftyone_database(review_settings)
    import fiftyone as fo

    rng = np.random.default_rng(3)
    labels = ["paper", "glass", "film"]
    dataset = fo.Dataset()
    frames = []
    for _ in range(25):
        gt = [{"xywh_px": [float(v) for v in (*rng.uniform(0, 60, 2), *rng.uniform(5, 40, 2))], "label": str(rng.choice(labels))}
              for _ in range(rng.integers(0, 6))]
        preds = []
        for box in gt + gt:  # jittered copies (duplicates included) plus clutter
            if rng.random() < 0.6:
                x, y, w, h = box["xywh_px"]
                preds.append({"xywh_px": [x + rng.normal(0, 3), y + rng.normal(0, 3), w, h],
                              "label": str(rng.choice(labels)), "score": float(rng.random())})
        preds += [{"xywh_px": [float(v) for v in (*rng.uniform(0, 60, 2), *rng.uniform(5, 40, 2))],
                   "label": str(rng.choice(labels)), "score": float(rng.random())} for _ in range(rng.integers(0, 3))]
        frames.append((gt, preds))
        dataset.add_sample(fo.Sample(filepath=f"/nowhere/{len(frames)}.jpg", ground_truth=_detections(gt, 100, 100),
                                     predictions=_detections(preds, 100, 100)))
    dataset.evaluate_detections("predictions", gt_field="ground_truth", eval_key="agn", classwise=False, progress=False)
    n_confusions = 0
    for sample, (gt, preds) in zip(dataset.iter_samples(), frames):
        pred_info, gt_info = match_any_boxes(gt, preds)
        for det, info in zip(sample.predictions.detections, pred_info):
            fo_outcome = "fp" if det["agn"] == "fp" and not det["agn_id"] else ("tp" if det["agn"] == "tp" else "confusion")
            assert info["match"] == fo_outcome
            n_confusions += info["match"] == "confusion"
        for det, info in zip(sample.ground_truth.detections, gt_info):
            fo_outcome = "fn" if not det["agn_id"] else ("tp" if det["agn"] == "tp" else "confusion")
            assert info["match"] == fo_outcome
    assert n_confusions > 0  # the random case exercises confusions
    dataset.delete()
