"""Catalog schema: migrations from empty on SQLite and PostgreSQL, constraints that keep stages idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from curation.catalog import Annotation, Catalog, Frame, ModelVersion, Prediction, current_revision, head_revision


EXPECTED_TABLES = {
    "frames", "quarantine", "model_versions", "scoring_runs", "predictions", "selections",
    "selection_items", "label_tasks", "annotations", "dataset_versions", "runs", "locks", "state",
}


def _frame(i: int) -> Frame:
    return Frame(content_hash=f"{i:064x}", path=f"/belt/{i}.jpg", width=320, height=240, format="jpeg",
                 size_bytes=100, site="west", line="L1", camera="cam1")


def test_migrates_from_empty_to_head(catalog):
    tables = set(inspect(catalog.engine).get_table_names())
    assert EXPECTED_TABLES <= tables
    assert current_revision(catalog.engine) == head_revision()


def test_reopening_is_a_noop(catalog_url):
    first = Catalog(catalog_url)
    with first.session() as session:
        session.add(_frame(1))
    first.dispose()
    second = Catalog(catalog_url)  # migrates again: must not lose or duplicate anything
    with second.session() as session:
        assert session.scalars(select(Frame)).all()[0].path == "/belt/1.jpg"
    second.dispose()


def test_content_hash_is_unique(catalog):
    with catalog.session() as session:
        session.add(_frame(1))
    with pytest.raises(IntegrityError):
        with catalog.session() as session:
            session.add(_frame(1))


def test_one_prediction_per_frame_and_model(catalog):
    with catalog.session() as session:
        frame, model = _frame(1), ModelVersion(name="m1", arch="fcos", classes=["a"])
        session.add_all([frame, model])
        session.flush()
        session.add(Prediction(frame_id=frame.id, model_version_id=model.id, boxes=[], scores={}, uncertainty=0.1))
    with pytest.raises(IntegrityError):
        with catalog.session() as session:
            session.add(Prediction(frame_id=frame.id, model_version_id=model.id, boxes=[], scores={}, uncertainty=0.2))


def test_json_boxes_round_trip(catalog):
    boxes = [{"xywh_px": [1.5, 2.25, 30.0, 40.125], "label": "battery"}]
    with catalog.session() as session:
        frame = _frame(2)
        session.add(frame)
        session.flush()
        session.add(Annotation(frame_id=frame.id, source="import:test", source_id="a1", boxes=boxes))
    with catalog.session() as session:
        assert session.scalars(select(Annotation)).one().boxes == boxes


def test_state_key_values(catalog):
    assert catalog.get_state("last_pull") is None
    catalog.set_state("last_pull", {"at": "2026-11-01T00:00:00"})
    catalog.set_state("last_pull", {"at": "2026-11-02T00:00:00"})
    assert catalog.get_state("last_pull") == {"at": "2026-11-02T00:00:00"}


def test_unreachable_database_names_the_setting():
    from curation.errors import CatalogError

    with pytest.raises(CatalogError, match="catalog.url"):
        Catalog("postgresql+psycopg://nobody@127.0.0.1:1/none")
