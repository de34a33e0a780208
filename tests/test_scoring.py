"""Scoring glue against a real catalog (SQLite and PostgreSQL): rows, idempotence, resume after
kill -9, scope filters, and the predictions import for detectors that run elsewhere."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from active_learning.detectors.torchvision_adapter import build_model, checkpoint_dict
from active_learning.embeddings import VectorStore
from active_learning.uncertainty import NEEDS_FLIP, UNCERTAINTY
from curation.catalog import Frame, ModelVersion, Prediction, ScoringRun
from curation.errors import InputError
from curation.synth import CLASSES

REPO = Path(__file__).resolve().parent.parent
BELTCURATE = [sys.executable, "-m", "curation.cli"] if not (REPO / ".venv/bin/beltcurate").exists() else [
    str(REPO / ".venv/bin/beltcurate")]


def save_random_checkpoint(path: Path, *, model_version: str, input_size=(256, 192), seed=0) -> Path:
    torch.manual_seed(seed)
    model = build_model("fcos_mnv3s", CLASSES, input_size)
    torch.save(checkpoint_dict(model, arch="fcos_mnv3s", classes=CLASSES, input_size=input_size,
                               model_version=model_version), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "fcos.pt", model_version="random-fcos")


@pytest.fixture
def ingested(catalog, settings_env, synth_small):
    from curation.ingest import ingest_tree

    summary = ingest_tree(catalog, settings_env, synth_small / "images", site_from_path=True, workers=1)
    assert summary.new == 120
    return catalog, settings_env.with_overrides(score__chunk_size=16, score__workers=0, score__store_min_score=0.0)


def prediction_rows(catalog, model_version="random-fcos"):
    with catalog.session() as session:
        return session.execute(
            select(Prediction).join(ModelVersion).where(ModelVersion.name == model_version).order_by(Prediction.frame_id)
        ).scalars().all()


def test_score_frames_writes_one_row_per_frame_then_resumes_and_is_idempotent(ingested, checkpoint):
    from curation.scoring import score_frames

    catalog, settings = ingested
    first = score_frames(catalog, settings, checkpoint, limit=40)
    assert (first.scored, first.already_scored, first.remaining, first.failed) == (40, 0, 80, 0)
    assert first.chunks == 3  # 16 + 16 + 8
    rest = score_frames(catalog, settings, checkpoint)
    assert (rest.scored, rest.already_scored, rest.remaining) == (80, 40, 0)
    again = score_frames(catalog, settings, checkpoint)
    assert (again.scored, again.already_scored) == (0, 120)

    rows = prediction_rows(catalog)
    assert len(rows) == 120 and len({r.frame_id for r in rows}) == 120
    expected_scores = set(UNCERTAINTY.names()) - NEEDS_FLIP
    store = VectorStore(settings.state_dir / "vectors", "random-fcos")
    assert len(store) == 120 and store.dim == first.embedding_dim == 192
    for row in rows:
        assert set(row.scores) == expected_scores
        assert row.uncertainty == pytest.approx(row.scores["entropy_sum"])
        assert store.frame_ids()[row.embedding_row] == row.frame_id
        for box in row.boxes:
            assert set(box) == {"xywh_px", "label", "score", "probs"}
            assert box["label"] in CLASSES and len(box["probs"]) == len(CLASSES)
            x, y, w, h = box["xywh_px"]
            assert w >= 0 and h >= 0 and 0 <= x <= 320 and 0 <= y <= 240
    with catalog.session() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.name == "random-fcos"))
        assert version.classes == list(CLASSES) and version.arch == "fcos_mnv3s" and len(version.checkpoint_hash) == 64
        runs = session.scalars(select(ScoringRun).order_by(ScoringRun.id)).all()
        assert [(r.status, r.n_frames) for r in runs] == [("done", 40), ("done", 80), ("done", 0)]
        assert {r.scoring_run_id for r in rows} == {runs[0].id, runs[1].id}


def test_site_and_frame_id_scopes(ingested, checkpoint):
    from curation.scoring import score_frames

    catalog, settings = ingested
    with catalog.session() as session:
        east = session.scalars(select(Frame.id).where(Frame.site == "east")).all()
        some = session.scalars(select(Frame.id).order_by(Frame.id).limit(5)).all()
    summary = score_frames(catalog, settings, checkpoint, site="east")
    assert summary.scored == len(east) > 0
    assert {r.frame_id for r in prediction_rows(catalog)} == set(east)
    summary = score_frames(catalog, settings, checkpoint, frame_ids=some)
    assert summary.scored == len(set(some) - set(east))
    assert {r.frame_id for r in prediction_rows(catalog)} == set(east) | set(some)


def test_another_checkpoint_under_the_same_model_version_is_refused(ingested, checkpoint, tmp_path):
    from curation.scoring import score_frames

    catalog, settings = ingested
    score_frames(catalog, settings, checkpoint, limit=2)
    other = save_random_checkpoint(tmp_path / "other.pt", model_version="random-fcos", seed=1)
    with pytest.raises(InputError, match="own model_version"):
        score_frames(catalog, settings, other, limit=2)


# ----------------------------------------------------------------------------- crash and resume
def _cli_env(state_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELTCURATE_")}
    env.update(BELTCURATE_STATE_DIR=str(state_dir), BELTCURATE_SCORE_CHUNK_SIZE="8", BELTCURATE_SCORE_BATCH_SIZE="4",
               BELTCURATE_SCORE_STORE_MIN_SCORE="0", OMP_WAIT_POLICY="PASSIVE")
    return env


def _count(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as con:
        try:
            return con.execute("select count(*) from predictions").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def _final_rows(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        rows = con.execute("select frame_id, boxes, scores, uncertainty from predictions").fetchall()
    return {frame_id: (json.loads(boxes), json.loads(scores), uncertainty) for frame_id, boxes, scores, uncertainty in rows}


def test_killed_scoring_resumes_without_duplicates_and_matches_an_uninterrupted_run(tmp_path, synth_small):
    # 640x480 input: ~4x the work per frame, so the run lasts long enough to be killed mid-way.
    slow = save_random_checkpoint(tmp_path / "slow.pt", model_version="slow-fcos", input_size=(640, 480))
    states = {name: tmp_path / name for name in ("killed", "clean")}
    for state in states.values():
        subprocess.run([*BELTCURATE, "ingest", str(synth_small / "images"), "--site-from-path"],
                       env=_cli_env(state), check=True, capture_output=True)
    killed_db = states["killed"] / "catalog.sqlite"

    process = subprocess.Popen([*BELTCURATE, "score", "--model", str(slow)], env=_cli_env(states["killed"]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(killed_db) < 8:  # the first chunk is committed
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "scoring never committed a chunk"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    at_kill = _count(killed_db)
    assert 8 <= at_kill < 120, f"kill came too late ({at_kill} rows); the test needs a slower run"
    assert at_kill % 8 == 0  # whole chunks only

    resumed = subprocess.run([*BELTCURATE, "score", "--model", str(slow), "--json"], env=_cli_env(states["killed"]),
                             capture_output=True, text=True, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["already_scored"] == at_kill and summary["scored"] == 120 - at_kill
    subprocess.run([*BELTCURATE, "score", "--model", str(slow)], env=_cli_env(states["clean"]), check=True,
                   capture_output=True)

    with sqlite3.connect(killed_db) as con:
        assert con.execute("select count(*), count(distinct frame_id) from predictions").fetchone() == (120, 120)
        statuses = [s for (s,) in con.execute("select status from scoring_runs order by id")]
    assert statuses == ["interrupted", "done"]
    killed, clean = _final_rows(killed_db), _final_rows(states["clean"] / "catalog.sqlite")
    assert killed.keys() == clean.keys()
    for frame_id, (boxes, scores, uncertainty) in clean.items():
        k_boxes, k_scores, k_uncertainty = killed[frame_id]
        assert [b["label"] for b in k_boxes] == [b["label"] for b in boxes]
        for a, b in zip(k_boxes, boxes):
            np.testing.assert_allclose(a["xywh_px"], b["xywh_px"], atol=1e-2)
        assert k_uncertainty == pytest.approx(uncertainty, rel=1e-4, abs=1e-4)
    stores = [VectorStore(state / "vectors", "slow-fcos") for state in (states["killed"], states["clean"])]
    assert len(stores[0]) == len(stores[1]) == 120
    ids = np.array(sorted(clean))
    np.testing.assert_allclose(stores[0].get(ids), stores[1].get(ids), atol=2e-3)


# ----------------------------------------------------------------------------- predictions import
def _results_from_ground_truth(coco: dict, with_probs: bool) -> list[dict]:
    results = []
    for ann in coco["annotations"]:
        entry = {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 0.8}
        if with_probs:
            probs = [0.02] * len(CLASSES)
            probs[ann["category_id"] - 1] = 0.8
            entry["probs"] = probs
        results.append(entry)
    return results


def test_import_coco_results_with_embeddings(ingested, synth_small, tmp_path):
    from curation.scoring import import_predictions

    catalog, settings = ingested
    coco = json.loads((synth_small / "annotations.json").read_text())
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(_results_from_ground_truth(coco, with_probs=True)))
    image_ids = np.array([img["id"] for img in coco["images"]])
    vectors = np.random.default_rng(0).normal(size=(len(image_ids), 32)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", image_ids=image_ids, embeddings=vectors)

    summary = import_predictions(catalog, settings, results_path, model_version="yolo-robot-7",
                                 images_json=synth_small / "annotations.json", embeddings=tmp_path / "emb.npz")
    assert (summary.scored, summary.failed, summary.engine, summary.embedding_dim) == (120, 0, "import", 32)
    rows = {r.frame_id: r for r in prediction_rows(catalog, "yolo-robot-7")}
    assert len(rows) == 120  # images without boxes get an (empty) prediction too
    with catalog.session() as session:
        path_of = dict(session.execute(select(Frame.id, Frame.path)).all())
        version = session.scalar(select(ModelVersion).where(ModelVersion.name == "yolo-robot-7"))
        assert version.arch == "external" and version.classes == list(CLASSES)
    by_file = {img["file_name"]: img["id"] for img in coco["images"]}
    gt_count = {img["id"]: 0 for img in coco["images"]}
    for ann in coco["annotations"]:
        gt_count[ann["image_id"]] += 1
    store = VectorStore(settings.state_dir / "vectors", "yolo-robot-7")
    for frame_id, row in rows.items():
        image_id = next(i for name, i in by_file.items() if path_of[frame_id].endswith(name))
        assert len(row.boxes) == gt_count[image_id]
        assert all(box["probs"][CLASSES.index(box["label"])] == pytest.approx(0.8) for box in row.boxes)
        np.testing.assert_allclose(store.get([frame_id])[0], vectors[list(image_ids).index(image_id)], atol=1e-2)
    again = import_predictions(catalog, settings, results_path, model_version="yolo-robot-7",
                               images_json=synth_small / "annotations.json")
    assert (again.scored, again.already_scored) == (0, 120)


def test_import_without_per_class_scores_ranks_by_top_score(ingested, tmp_path):
    from curation.scoring import import_predictions

    catalog, settings = ingested
    with catalog.session() as session:
        frame_a, frame_b = session.scalars(select(Frame.id).order_by(Frame.id).limit(2)).all()
    results = [{"image_id": frame_a, "category_id": 3, "bbox": [10, 10, 30, 30], "score": 0.97},
               {"image_id": frame_b, "category_id": 3, "bbox": [10, 10, 30, 30], "score": 0.55}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    summary = import_predictions(catalog, settings, path, model_version="tf-7")
    assert summary.scored == 2 and summary.embedding_dim is None
    rows = {r.frame_id: r for r in prediction_rows(catalog, "tf-7")}
    assert rows[frame_b].uncertainty > rows[frame_a].uncertainty
    assert rows[frame_a].boxes[0]["label"] == CLASSES[2] and "probs" not in rows[frame_a].boxes[0]
    assert rows[frame_a].embedding_row is None


def test_import_errors_name_the_input_and_the_fix(ingested, tmp_path):
    from curation.scoring import import_predictions

    catalog, settings = ingested
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    with pytest.raises(InputError, match="category_id 99"):
        import_predictions(catalog, settings, path, model_version="x")
    with pytest.raises(InputError, match="--model-version"):
        import_predictions(catalog, settings, path, model_version=None)
    path.write_text(json.dumps([{"image_id": 10_000, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]))
    with pytest.raises(InputError, match="match a catalog frame"):
        import_predictions(catalog, settings, path, model_version="x")
    path.write_text(json.dumps({"not": "results"}))
    with pytest.raises(InputError, match="COCO results list"):
        import_predictions(catalog, settings, path, model_version="x")
    with catalog.session() as session:
        assert session.scalar(select(func.count(Prediction.id))) == 0


def test_score_cli_imports_predictions(ingested, synth_small, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from curation.cli import main

    catalog, settings = ingested
    monkeypatch.setenv("BELTCURATE_CATALOG_URL", catalog.url)
    coco = json.loads((synth_small / "annotations.json").read_text())
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results_from_ground_truth(coco, with_probs=False)))
    result = CliRunner().invoke(main, ["score", "--predictions", str(path), "--model-version", "cli-import",
                                       "--images-json", str(synth_small / "annotations.json"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scored"] == 120
    missing = CliRunner().invoke(main, ["score", "--predictions", str(path)])
    assert missing.exit_code == 1 and "--model-version" in missing.output
