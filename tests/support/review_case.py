"""A constructed catalog whose every review view has a known answer.

Frames are 100x100 JPEGs drawn here (so the app can render them). Boxes are absolute-pixel
``xywh_px`` as in the catalog. With COCO matching at IoU 0.5 and the default settings
(review.fp_min_confidence 0.3, review.low_iou 0.75):

    frame   ground truth           prediction (model m1)               expected view
    tp      can                    can, same box, 0.9                  (none)
    fp      (empty)                pet_bottle 0.8 on empty belt        false-positives
    miss    paper                  (nothing)                           missed-objects
    loose   can 40x40              can shifted by 6 px (IoU 0.57)      poor-localization
    confuse battery                can, same box                       class-confusions
    lowfp   film                   film (same box) + pet_bottle 0.1    (FP below 0.3: no view)
    gtonly  cardboard              (not scored)                        (labeled, no predictions)
    u_low   -                      uncertainty 0.2                     uncertain-unlabeled #3, selection #2
    u_high  -                      uncertainty 0.9                     uncertain-unlabeled #1
    u_mid   -                      uncertainty 0.5                     uncertain-unlabeled #2, selection #1
    unseen  -                      (not scored)                        not in the dataset

Embeddings: u_low and u_high are near-duplicates (cosine distance ~1e-4); every other vector is
a distinct basis direction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

SIZE = 100
BASE_TIME = dt.datetime(2024, 5, 1, 8, 0, 0)

# name: (gt boxes or None, predicted boxes or None, uncertainty, site, camera)
CASE = {
    "tp": ([{"xywh_px": [10, 10, 20, 20], "label": "aluminum_can"}],
           [{"xywh_px": [10, 10, 20, 20], "label": "aluminum_can", "score": 0.9}], 0.1, "west", "cam1"),
    "fp": ([], [{"xywh_px": [50, 50, 20, 20], "label": "pet_bottle", "score": 0.8}], 0.3, "west", "cam1"),
    "miss": ([{"xywh_px": [10, 10, 30, 30], "label": "paper"}], [], 0.05, "north", "cam1"),
    "loose": ([{"xywh_px": [10, 10, 40, 40], "label": "aluminum_can"}],
              [{"xywh_px": [16, 16, 40, 40], "label": "aluminum_can", "score": 0.7}], 0.4, "north", "cam1"),
    "confuse": ([{"xywh_px": [10, 10, 30, 30], "label": "battery"}],
                [{"xywh_px": [10, 10, 30, 30], "label": "aluminum_can", "score": 0.6}], 0.6, "east", "cam1"),
    "lowfp": ([{"xywh_px": [10, 10, 20, 20], "label": "film"}],
              [{"xywh_px": [10, 10, 20, 20], "label": "film", "score": 0.9},
               {"xywh_px": [60, 60, 20, 20], "label": "pet_bottle", "score": 0.1}], 0.2, "east", "cam1"),
    "gtonly": ([{"xywh_px": [5, 5, 50, 50], "label": "cardboard"}], None, None, "west", "cam2"),
    "u_low": (None, [{"xywh_px": [20, 20, 20, 20], "label": "glass", "score": 0.4}], 0.2, "west", "cam2"),
    "u_high": (None, [{"xywh_px": [20, 20, 20, 20], "label": "glass", "score": 0.35}], 0.9, "west", "cam2"),
    "u_mid": (None, [{"xywh_px": [30, 30, 20, 20], "label": "film", "score": 0.5}], 0.5, "north", "cam1"),
    "unseen": (None, None, None, "north", "cam1"),
}
SELECTION = ["u_mid", "u_low"]  # rank order of the newest selection
OLD_SELECTION = ["u_high"]  # an older selection, not the current one
MODEL = "m1"

EXPECTED_VIEWS = {
    "false-positives": ["fp"],
    "missed-objects": ["miss"],
    "poor-localization": ["loose"],
    "class-confusions": ["confuse"],
    "uncertain-unlabeled": ["u_high", "u_mid", "u_low"],
    "current-selection": ["u_mid", "u_low"],
    "near-duplicates": ["u_low", "u_high"],
}
IN_DATASET = [name for name, (gt, pred, *_rest) in CASE.items() if gt is not None or pred is not None]


@dataclass
class ReviewCase:
    frame_ids: dict[str, int]
    image_dir: Path
    vectors: dict[int, np.ndarray] = field(default_factory=dict)

    def name_of(self, frame_id: int) -> str:
        return {v: k for k, v in self.frame_ids.items()}[frame_id]

    def embeddings(self, frame_ids):
        """The ``frame_ids -> (found, vectors)`` callable build_review_dataset takes."""
        found = np.array([frame_id in self.vectors for frame_id in frame_ids], dtype=bool)
        rows = [self.vectors[frame_id] for frame_id in frame_ids if frame_id in self.vectors]
        return found, np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def _draw(path: Path, gt, pred) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), (58, 60, 64))
    draw = ImageDraw.Draw(image)
    for box in (gt or []) + (pred or []):
        x, y, w, h = box["xywh_px"]
        draw.rectangle([x, y, x + w, y + h], fill=(200, 160, 90) if "score" not in box else None, outline=(240, 240, 240))
    image.save(path, quality=90)


def build_case(catalog, image_dir: Path) -> ReviewCase:
    from curation.catalog import Annotation, Frame, ModelVersion, Prediction, Selection, SelectionItem

    image_dir.mkdir(parents=True, exist_ok=True)
    frame_ids: dict[str, int] = {}
    with catalog.session() as session:
        model = ModelVersion(name=MODEL, arch="test", classes=["aluminum_can", "paper"], meta={})
        session.add(model)
        session.flush()
        for offset, (name, (gt, pred, uncertainty, site, camera)) in enumerate(CASE.items()):
            path = image_dir / f"{name}.jpg"
            _draw(path, gt, pred)
            frame = Frame(
                content_hash=hashlib.sha256(path.read_bytes() + name.encode()).hexdigest(), path=str(path),
                width=SIZE, height=SIZE, format="jpeg", size_bytes=path.stat().st_size, site=site, line="L1",
                camera=camera, captured_at=BASE_TIME + dt.timedelta(seconds=offset), sequence=f"{site}-{camera}",
            )
            session.add(frame)
            session.flush()
            frame_ids[name] = frame.id
            if gt is not None:
                session.add(Annotation(frame_id=frame.id, source="test", source_id=name, boxes=gt, status="accepted", is_current=True))
            if pred is not None:
                session.add(Prediction(
                    frame_id=frame.id, model_version_id=model.id, boxes=pred,
                    scores={"entropy_sum": uncertainty, "max_entropy": uncertainty / 2}, uncertainty=uncertainty,
                ))
        old = Selection(name="sel-old", strategy="random", budget=1, seed=0, model_version_id=model.id,
                        created_at=BASE_TIME)
        new = Selection(name="sel-new", strategy="hybrid", budget=2, seed=0, model_version_id=model.id,
                        created_at=BASE_TIME + dt.timedelta(days=1))
        session.add_all([old, new])
        session.flush()
        for rank, name in enumerate(OLD_SELECTION):
            session.add(SelectionItem(selection_id=old.id, frame_id=frame_ids[name], rank=rank, reason="random"))
        for rank, name in enumerate(SELECTION):
            session.add(SelectionItem(selection_id=new.id, frame_id=frame_ids[name], rank=rank,
                                      reason=f"uncertainty rank {rank}", uncertainty=CASE[name][2]))
    dim = len(CASE) + 1
    vectors = {}
    for axis, name in enumerate(CASE):
        if name == "unseen":
            continue
        vector = np.zeros(dim, dtype=np.float32)
        vector[axis] = 1.0
        vectors[frame_ids[name]] = vector
    vectors[frame_ids["u_high"]] = vectors[frame_ids["u_low"]] + np.eye(dim, dtype=np.float32)[-1] * 0.01
    return ReviewCase(frame_ids=frame_ids, image_dir=image_dir, vectors=vectors)


@pytest.fixture
def review_settings(fiftyone_env, tmp_path, monkeypatch):
    """Settings pointing review at the session's private mongod, with a dataset name of its own."""
    for key in list(os.environ):
        if key.startswith("BELTCURATE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BELTCURATE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BELTCURATE_REVIEW_MONGO_URI", fiftyone_env["FIFTYONE_DATABASE_URI"])
    monkeypatch.setenv("BELTCURATE_REVIEW_DATABASE_NAME", fiftyone_env["FIFTYONE_DATABASE_NAME"])
    monkeypatch.setenv("BELTCURATE_REVIEW_DATASET", f"review-{uuid.uuid4().hex[:10]}")
    from curation.settings import load_settings

    return load_settings()


@pytest.fixture
def review_case(sqlite_catalog, tmp_path) -> ReviewCase:
    return build_case(sqlite_catalog, tmp_path / "images")
