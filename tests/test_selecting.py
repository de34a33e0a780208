"""select_from_catalog on SQLite and a real PostgreSQL: pool, exclusions, rows, files, determinism."""

from __future__ import annotations

import csv
import hashlib
import datetime as dt
import json

import numpy as np
import pytest
from sqlalchemy import func, select

from active_learning.embeddings import VectorStore
from curation.catalog import (
    Annotation,
    Frame,
    LabelTask,
    ModelVersion,
    Prediction,
    Selection,
    SelectionItem,
)
from curation.errors import InputError
from curation.selecting import predicted_class_counts, select_from_catalog

CLASSES = ["cardboard", "paper", "battery"]
N_FRAMES = 60
DIM = 16
LABELED = [0, 1, 2, 3, 4]  # current accepted annotations
NOT_LABELED = [5, 6]  # an old (not current) annotation; a skipped one
PUSHED = [7, 8]
PUSH_DELETED = [9]
NO_VECTOR = [10]
NO_PREDICTION = [11]
DUP_LOW, DUP_HIGH = 12, 13  # one camera, 0.5 s apart, nearly identical: 13 is kept
START = dt.datetime(2026, 11, 2, 6, 0, 0)


def populate(catalog, settings, *, frames: int = N_FRAMES, model: str = "det-v1") -> dict[int, int]:
    """Frames, predictions, vectors, annotations and tasks; returns {index: frame_id}."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((frames, DIM)).astype(np.float32)
    labeled_dirs = vectors[LABELED] / np.linalg.norm(vectors[LABELED], axis=1, keepdims=True)
    vectors[DUP_HIGH] = -labeled_dirs.sum(axis=0)  # the farthest frame from everything labeled
    vectors[DUP_LOW] = vectors[DUP_HIGH] + 0.001  # and its near-duplicate
    uncertainty = rng.random(frames)
    uncertainty[DUP_HIGH], uncertainty[DUP_LOW] = 0.99, 0.98
    ids: dict[int, int] = {}
    with catalog.session() as session:
        version = ModelVersion(name=model, arch="fcos", classes=CLASSES, meta={})
        session.add(version)
        session.flush()
        for i in range(frames):
            camera = "cam1" if i % 2 == 0 or i in (DUP_LOW, DUP_HIGH) else "cam2"
            when = START + dt.timedelta(seconds=10 * i + (0.5 if i == DUP_HIGH else 0))
            if i == DUP_HIGH:
                when = START + dt.timedelta(seconds=10 * DUP_LOW + 0.5)
            frame = Frame(content_hash=hashlib.sha256(f"{model}-{i}".encode()).hexdigest(), path=f"/belt/{i:03d}.jpg", width=320, height=240,
                          format="jpeg", size_bytes=100, site="west", line="L1", camera=camera, captured_at=when)
            session.add(frame)
            session.flush()
            ids[i] = frame.id
            if i in NO_PREDICTION:
                continue
            boxes = [{"xywh_px": [1, 2, 3, 4], "label": "cardboard", "score": 0.9}]
            if i % 7 == 0:
                boxes.append({"xywh_px": [5, 5, 5, 5], "label": "battery", "score": 0.6})
            session.add(Prediction(frame_id=frame.id, model_version_id=version.id, boxes=boxes,
                                   scores={"entropy_sum": float(uncertainty[i])}, uncertainty=float(uncertainty[i])))
        for i in LABELED:
            session.add(Annotation(frame_id=ids[i], source="labelstudio", source_id=f"{model}-a{i}", boxes=[], is_current=True))
        session.add(Annotation(frame_id=ids[5], source="labelstudio", source_id=f"{model}-old5", boxes=[], is_current=False))
        session.add(Annotation(frame_id=ids[6], source="labelstudio", source_id=f"{model}-skip6", boxes=[], status="skipped"))
        for i in PUSHED + PUSH_DELETED:
            session.add(LabelTask(frame_id=ids[i], ls_project_id=1, ls_task_id=100 + i + 1000 * len(ids),
                                  status="deleted" if i in PUSH_DELETED else "pushed"))
    with_vector = [i for i in range(frames) if i not in NO_VECTOR + NO_PREDICTION]
    VectorStore(settings.state_dir / "vectors", model).append(
        np.array([ids[i] for i in with_vector]), vectors[with_vector])
    return ids


def test_selection_respects_exclusions_and_is_recorded(catalog, settings_env):
    ids = populate(catalog, settings_env)
    summary = select_from_catalog(catalog, settings_env, budget=10, strategy="hybrid", seed=0)
    excluded_ids = {ids[i] for i in LABELED + PUSHED + NO_VECTOR + NO_PREDICTION}
    assert summary.excluded == {"labeled": 5, "pushed": 2, "no_embedding": 1}
    assert summary.pool == N_FRAMES - 2 and summary.eligible == N_FRAMES - 2 - 5 - 2
    assert summary.labeled_seeds == 5 and summary.selected == 10
    assert summary.model_version == "det-v1" and not summary.dry_run
    with catalog.session() as session:
        selection = session.get(Selection, summary.selection_id)
        assert selection.name == summary.name and selection.strategy == "hybrid" and selection.budget == 10
        assert selection.params["excluded"] == summary.excluded
        items = session.scalars(select(SelectionItem).where(SelectionItem.selection_id == selection.id)
                                .order_by(SelectionItem.rank)).all()
    assert [item.rank for item in items] == list(range(1, 11))
    chosen = [item.frame_id for item in items]
    assert len(set(chosen)) == 10 and not set(chosen) & excluded_ids
    assert ids[DUP_HIGH] in chosen and ids[DUP_LOW] not in chosen
    assert all(item.reason and item.distance_to_labeled is not None for item in items)

    rows = list(csv.DictReader(open(summary.files["csv"], newline="")))
    assert [int(r["frame_id"]) for r in rows] == chosen
    document = json.loads(open(summary.files["json"]).read())
    assert [item["frame_id"] for item in document["items"]] == chosen
    dup_item = next(item for item in document["items"] if item["frame_id"] == ids[DUP_HIGH])
    assert dup_item["near_duplicates"] == [ids[DUP_LOW]]
    assert "stands for 1 near-duplicate" in dup_item["reason"]
    assert document["strategy"] == "hybrid" and document["params"]["rare_classes"] == ["battery"]


def test_dry_run_writes_nothing_and_matches_the_real_run(catalog, settings_env):
    populate(catalog, settings_env)
    dry = select_from_catalog(catalog, settings_env, budget=8, strategy="coreset", dry_run=True, seed=3)
    with catalog.session() as session:
        assert session.scalar(select(func.count()).select_from(Selection)) == 0
    assert dry.selection_id is None and dry.files == {}
    assert not (settings_env.state_dir / "selections").exists()
    real = select_from_catalog(catalog, settings_env, budget=8, strategy="coreset", seed=3)
    again = select_from_catalog(catalog, settings_env, budget=8, strategy="coreset", seed=3)
    frame_ids = lambda s: [item["frame_id"] for item in s.items]  # noqa: E731
    assert frame_ids(dry) == frame_ids(real) == frame_ids(again)
    assert real.name != again.name


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "cluster", "balance"])
def test_every_strategy_runs_on_the_catalog(sqlite_catalog, settings_env, strategy):
    ids = populate(sqlite_catalog, settings_env)
    summary = select_from_catalog(sqlite_catalog, settings_env, budget=500, strategy=strategy)
    assert summary.selected == summary.eligible == N_FRAMES - 2 - 5 - 2
    with sqlite_catalog.session() as session:
        chosen = set(session.scalars(select(SelectionItem.frame_id)).all())
    assert not chosen & {ids[i] for i in LABELED + PUSHED}


def test_pca_reduces_store_vectors(sqlite_catalog, settings_env):
    populate(sqlite_catalog, settings_env)
    settings = settings_env.with_overrides(score__pca_dim=4)
    summary = select_from_catalog(sqlite_catalog, settings, budget=6, strategy="hybrid", dry_run=True)
    assert summary.selected == 6


def test_settings_feed_the_strategy(sqlite_catalog, settings_env):
    populate(sqlite_catalog, settings_env)
    settings = settings_env.with_overrides(select__explore_fraction=0.5, select__rare_quota=0.0)
    summary = select_from_catalog(sqlite_catalog, settings, budget=10, strategy="hybrid", dry_run=True)
    assert summary.stages.get("explore") == 5
    assert summary.params["explore_fraction"] == 0.5


def test_min_distance_to_labeled_is_reported(sqlite_catalog, settings_env):
    populate(sqlite_catalog, settings_env)
    settings = settings_env.with_overrides(select__min_distance_to_labeled=1.9)
    summary = select_from_catalog(sqlite_catalog, settings, budget=50, strategy="uncertainty", dry_run=True)
    assert summary.excluded["near_labeled"] > 0
    assert summary.selected == summary.eligible


def test_newest_model_version_with_predictions_is_the_default(sqlite_catalog, settings_env):
    populate(sqlite_catalog, settings_env, model="old", frames=20)
    populate(sqlite_catalog, settings_env, model="new", frames=20)
    assert select_from_catalog(sqlite_catalog, settings_env, budget=3, dry_run=True).model_version == "new"
    chosen = select_from_catalog(sqlite_catalog, settings_env, budget=3, dry_run=True, model_version="old")
    assert chosen.model_version == "old"
    with pytest.raises(InputError, match="model version 'nope' is not in the catalog; known: new, old"):
        select_from_catalog(sqlite_catalog, settings_env, budget=3, model_version="nope")


def test_clear_errors_without_predictions_or_vectors(sqlite_catalog, settings_env):
    with pytest.raises(InputError, match="no predictions yet; run 'beltcurate score'"):
        select_from_catalog(sqlite_catalog, settings_env, budget=3)
    with sqlite_catalog.session() as session:
        version = ModelVersion(name="bare", arch="fcos", classes=CLASSES, meta={})
        frame = Frame(content_hash="f" * 64, path="/x.jpg", width=1, height=1, format="jpeg", size_bytes=1,
                      site="s", line="l", camera="c")
        session.add_all([version, frame])
        session.flush()
        session.add(Prediction(frame_id=frame.id, model_version_id=version.id, boxes=[], scores={}, uncertainty=0.5))
    with pytest.raises(InputError, match="no embeddings stored for model version 'bare'"):
        select_from_catalog(sqlite_catalog, settings_env, budget=3)


def test_predicted_class_counts_uses_the_score_floor_and_keeps_unknown_labels():
    names = ["paper"]
    counts = predicted_class_counts(
        [[{"label": "paper", "score": 0.9}, {"label": "paper", "score": 0.1}], [{"label": "glass", "score": 0.5}], []],
        names, 0.3)
    assert names == ["paper", "glass"]
    assert counts.tolist() == [[1, 0], [0, 1], [0, 0]]
