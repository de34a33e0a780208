"""The review dataset holds exactly what the catalog says (real mongod, FiftyOne read back)."""

from __future__ import annotations

import pytest

from tests.support.review_case import CASE, IN_DATASET, SIZE, review_case, review_settings  # noqa: F401

pytestmark = pytest.mark.fiftyone


def _px(detection) -> list[float]:
    x, y, w, h = detection.bounding_box
    return [round(v * SIZE, 6) for v in (x, y, w, h)]


def test_dataset_contents_equal_the_catalog(sqlite_catalog, review_settings, review_case):
    from sqlalchemy import select

    from curation.catalog import Frame
    from curation.review import build_review_dataset, open_review_dataset

    summary = build_review_dataset(sqlite_catalog, review_settings, embeddings=review_case.embeddings)
    assert (summary.frames, summary.added, summary.updated, summary.removed) == (len(IN_DATASET), len(IN_DATASET), 0, 0)
    assert summary.labeled == sum(CASE[name][0] is not None for name in IN_DATASET)

    dataset = open_review_dataset(review_settings)
    assert dataset.persistent
    with sqlite_catalog.session() as session:
        frames = {frame.id: frame for frame in session.scalars(select(Frame))}
    samples = {sample.frame_id: sample for sample in dataset}
    assert sorted(review_case.name_of(f) for f in samples) == sorted(IN_DATASET)
    for frame_id, sample in samples.items():
        name = review_case.name_of(frame_id)
        gt, pred, uncertainty, site, camera = CASE[name]
        frame = frames[frame_id]
        assert sample.filepath == frame.path
        assert (sample.site, sample.line, sample.camera, sample.sequence) == (frame.site, frame.line, frame.camera, frame.sequence)
        assert sample.captured_at == frame.captured_at
        assert (sample.metadata.width, sample.metadata.height) == (frame.width, frame.height)
        assert sample.labeled is (gt is not None)
        if gt is None:
            assert sample.ground_truth is None
        else:
            assert [(d.label, _px(d)) for d in sample.ground_truth.detections] == [(b["label"], b["xywh_px"]) for b in gt]
        if pred is None:
            assert sample.predictions is None and sample.uncertainty is None and sample.model_version is None
        else:
            assert [(d.label, _px(d), d.confidence) for d in sample.predictions.detections] == [
                (b["label"], b["xywh_px"], b["score"]) for b in pred
            ]
            assert sample.uncertainty == uncertainty and sample.model_version == "m1"
            assert sample.uncertainty_scores == {"entropy_sum": uncertainty, "max_entropy": uncertainty / 2}
        assert sample.selected is (name in ("u_mid", "u_low"))
    assert samples[review_case.frame_ids["u_mid"]].selection == "sel-new"
    assert samples[review_case.frame_ids["u_mid"]].selection_reason == "uncertainty rank 0"
    assert samples[review_case.frame_ids["u_high"]].selection is None  # only in the older selection
    dup_group = review_case.frame_ids["u_low"]
    assert samples[review_case.frame_ids["u_high"]].dup_group == dup_group
    assert samples[review_case.frame_ids["u_high"]].dup_group_size == 2
    assert samples[review_case.frame_ids["tp"]].dup_group is None


def test_unknown_view_names_the_valid_ones(sqlite_catalog, review_settings, review_case):
    from curation.errors import InputError
    from curation.review import build_review_dataset, view_frame_ids

    build_review_dataset(sqlite_catalog, review_settings, embeddings=None)
    with pytest.raises(InputError, match=r"no saved view 'nope'.*false-positives"):
        view_frame_ids(review_settings, "nope")


def test_view_of_a_dataset_not_built_says_how_to_build_it(review_settings):
    from curation.errors import InputError
    from curation.review import view_frame_ids

    with pytest.raises(InputError, match="run 'beltcurate review' first"):
        view_frame_ids(review_settings, "false-positives")
