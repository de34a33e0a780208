"""``review --version``: ground truth comes from an exported dataset version, not the current labels."""

from __future__ import annotations

import pytest

from tests.support.review_case import CASE, review_case, review_settings  # noqa: F401

pytestmark = pytest.mark.fiftyone


def test_ground_truth_from_a_dataset_version(sqlite_catalog, review_settings, review_case):
    from sqlalchemy import select

    from curation.catalog import Annotation
    from curation.exporting import export_dataset
    from curation.review import build_review_dataset, collect_records, open_review_dataset

    export_dataset(sqlite_catalog, review_settings, name="v1", formats=["coco"])
    miss = review_case.frame_ids["miss"]
    with sqlite_catalog.session() as session:  # relabel after the export: the version must not see it
        session.scalar(select(Annotation).where(Annotation.frame_id == miss)).boxes = [{"xywh_px": [1, 1, 5, 5], "label": "glass"}]

    _, records = collect_records(sqlite_catalog, dataset_version="v1")
    by_name = {review_case.name_of(r.frame_id): r for r in records}
    for name, record in by_name.items():
        gt = CASE[name][0]
        if gt is None:
            assert record.gt_boxes is None
        else:
            assert [(b["label"], [round(v, 6) for v in b["xywh_px"]]) for b in record.gt_boxes] == [(b["label"], b["xywh_px"]) for b in gt]

    summary = build_review_dataset(sqlite_catalog, review_settings, dataset_version="v1", embeddings=None)
    assert summary.dataset_version == "v1"
    sample = open_review_dataset(review_settings).match({"frame_id": miss}).first()
    assert [d.label for d in sample.ground_truth.detections] == ["paper"]


def test_unknown_version_names_the_known_ones(sqlite_catalog, review_case):
    from curation.errors import InputError
    from curation.review import collect_records

    with pytest.raises(InputError, match=r"dataset version 'v9' is not in the catalog; known: \(none"):
        collect_records(sqlite_catalog, dataset_version="v9")
