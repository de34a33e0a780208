"""Re-running review adds, updates and removes only what changed in the catalog (real mongod)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support.review_case import IN_DATASET, SIZE, review_case, review_settings  # noqa: F401

pytestmark = pytest.mark.fiftyone


def test_incremental_update(sqlite_catalog, review_settings, review_case):
    from sqlalchemy import select

    from curation.catalog import Annotation, Frame, ModelVersion, Prediction
    from curation.review import build_review_dataset, open_review_dataset

    build = lambda: build_review_dataset(sqlite_catalog, review_settings, embeddings=review_case.embeddings)  # noqa: E731
    first = build()
    dataset = open_review_dataset(review_settings)
    ids_before = dict(zip(*dataset.values(["frame_id", "id"])))
    eval_before = dataset.get_evaluation_info("eval").timestamp

    again = build()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, len(IN_DATASET))
    dataset.reload()
    assert dataset.get_evaluation_info("eval").timestamp == eval_before  # nothing changed: not re-evaluated
    assert again.mAP == first.mAP and again.views == first.views

    u_high, gtonly = review_case.frame_ids["u_high"], review_case.frame_ids["gtonly"]
    with sqlite_catalog.session() as session:
        # u_high gets labeled: the box it predicted is right.
        session.add(Annotation(frame_id=u_high, source="test", source_id="new", boxes=[{"xywh_px": [20, 20, 20, 20], "label": "glass"}]))
        # tp's image moved: same frame, new path.
        session.get(Frame, review_case.frame_ids["tp"]).path = str(review_case.image_dir / "tp-moved.jpg")
        # gtonly's label is withdrawn: not labeled, not scored -> leaves the dataset.
        session.scalar(select(Annotation).where(Annotation.frame_id == gtonly)).status = "deleted"
        # a new frame gets scored.
        frame = Frame(content_hash="new", path=str(review_case.image_dir / "tp.jpg"), width=SIZE, height=SIZE,
                      format="jpeg", size_bytes=1, site="east", line="L1", camera="cam1",
                      captured_at=dt.datetime(2024, 5, 2))
        session.add(frame)
        session.flush()
        model_id = session.scalar(select(ModelVersion.id).where(ModelVersion.name == "m1"))
        session.add(Prediction(frame_id=frame.id, model_version_id=model_id, boxes=[], scores={}, uncertainty=0.95))
        new_id = frame.id

    third = build()
    assert (third.added, third.updated, third.removed) == (1, 2, 1)
    assert third.unchanged == len(IN_DATASET) - 3
    assert dataset[ids_before[review_case.frame_ids["tp"]]].filepath.endswith("tp-moved.jpg")
    dataset.reload()
    ids_after = dict(zip(*dataset.values(["frame_id", "id"])))
    assert set(ids_after) == (set(ids_before) - {gtonly}) | {new_id}
    # Updated in place: sample ids of kept frames do not change.
    assert all(ids_after[f] == ids_before[f] for f in ids_before if f != gtonly)
    sample = dataset[ids_after[u_high]]
    assert sample.labeled and [d.label for d in sample.ground_truth.detections] == ["glass"]
    assert sample.predictions.detections[0]["eval"] == "tp"  # re-evaluated
    assert third.evaluated == first.evaluated + 1
    assert dataset.get_evaluation_info("eval").timestamp > eval_before
    # The newest, most uncertain unlabeled frame now heads its view; u_high left it.
    uncertain = dataset.load_saved_view("uncertain-unlabeled").values("frame_id")
    assert uncertain[0] == new_id and u_high not in uncertain
