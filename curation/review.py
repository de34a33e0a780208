"""Error browsing: a persistent FiftyOne dataset built from the catalog, with saved error views.

``build_review_dataset`` turns the catalog into one FiftyOne sample per frame:

    frame_id, filepath, site, line, camera, sequence, captured_at   from ``frames``
    ground_truth (fo.Detections), labeled                           current accepted annotation
                                                                    (or the frames of a dataset version)
    predictions (fo.Detections), model_version                      ``predictions`` of one model version
    uncertainty, uncertainty_scores                                 image-level scores of that prediction
    selected, selection, selection_rank, selection_reason           the newest selection
    dup_group, dup_group_size                                       near-duplicate groups (our embeddings)
    bc_fingerprint                                                  what the sample was built from

and keeps it in step *incrementally*: frames whose fingerprint is unchanged are left alone, new
frames are added, changed ones updated in place (same sample id), vanished ones removed. When
anything changed, ``evaluate_detections`` runs again, the saved views are rewritten and the
similarity index is rebuilt from the vector store (precomputed embeddings, sklearn backend: no
model download).

Saved views (open by URL ``/datasets/<dataset>?view=<slug>``; slug == name here):

    false-positives       predictions that overlap no ground-truth box of any class, most confident first
    missed-objects        ground-truth boxes that no prediction of any class overlaps, most misses first
    poor-localization     correct-class matches with IoU below review.low_iou, worst first
    class-confusions      predictions matched to a ground-truth box of another class
    uncertain-unlabeled   unlabeled frames, most uncertain first
    current-selection     frames of the newest selection, in rank order
    near-duplicates       frames with near-duplicates, grouped

Labeled frames with predictions are evaluated twice. ``evaluate_detections`` (key ``eval``,
COCO-style, classwise) gives mAP, the per-class report and ``eval``/``eval_iou`` on every box.
A class-agnostic matching computed here (``match_any_boxes``, same greedy rule) gives each box
``match_any`` (pred: tp | confusion | fp; gt: tp | confusion | fn), ``match_any_iou`` and
``match_any_label``: it tells a confusion (a box of another class is there) from a plain miss or
a plain false positive. It is computed per frame when the sample is written, so an incremental
update does not redo it for unchanged frames (FiftyOne's own evaluation saves every sample and
costs ~0.2 s per frame with 50 predicted boxes on 2 cores).

Coordinates: the catalog stores absolute-pixel ``xywh_px`` boxes; FiftyOne wants ``[x, y, w, h]``
relative to the image size in 0..1; :mod:`exporters.fiftyone` converts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
from sqlalchemy import select

from curation.catalog import Annotation, Catalog, DatasetVersion, Frame, ModelVersion, Prediction, Selection, SelectionItem
from curation.errors import CurationError, InputError, ServiceError

EVAL_KEY = "eval"
MATCH_ANY = "match_any"  # detection attribute of the class-agnostic matching
SIMILARITY_BRAIN_KEY = "similarity"
# Ids per IN (...) query: SQLite allows 32766 bound parameters; PostgreSQL is fine either way.
SQL_CHUNK = 5000
# IoU a prediction needs to match a ground-truth box (COCO's single-threshold convention).
MATCH_IOU = 0.5
APP_START_TIMEOUT_S = 60.0
# Part of every sample fingerprint: bump it when the way samples are built changes, so the next
# run rewrites every sample instead of keeping ones built by older code.
SAMPLE_BUILD_VERSION = 2

VIEW_FALSE_POSITIVES = "false-positives"
VIEW_MISSED = "missed-objects"
VIEW_POOR_LOCALIZATION = "poor-localization"
VIEW_CONFUSIONS = "class-confusions"
VIEW_UNCERTAIN = "uncertain-unlabeled"
VIEW_SELECTION = "current-selection"
VIEW_NEAR_DUPLICATES = "near-duplicates"
VIEW_NAMES: tuple[str, ...] = (
    VIEW_FALSE_POSITIVES,
    VIEW_MISSED,
    VIEW_POOR_LOCALIZATION,
    VIEW_CONFUSIONS,
    VIEW_UNCERTAIN,
    VIEW_SELECTION,
    VIEW_NEAR_DUPLICATES,
)
VIEW_DESCRIPTIONS = {
    VIEW_FALSE_POSITIVES: "Predictions overlapping no ground-truth box, most confident first (missing labels or real false alarms)",
    VIEW_MISSED: "Ground-truth boxes no prediction overlaps, frames with most misses first",
    VIEW_POOR_LOCALIZATION: "Correct-class matches with low IoU, worst first",
    VIEW_CONFUSIONS: "Predictions matched to a ground-truth box of another class",
    VIEW_UNCERTAIN: "Unlabeled frames, most uncertain first",
    VIEW_SELECTION: "Frames of the newest selection, in rank order",
    VIEW_NEAR_DUPLICATES: "Frames that have near-duplicates (cosine distance under select.dedupe_threshold), by group",
}


# --------------------------------------------------------------------------- pure part
@dataclass
class FrameRecord:
    """Everything the review sample of one frame is built from (plain data, no FiftyOne)."""

    frame_id: int
    filepath: str
    width: int
    height: int
    site: str
    line: str
    camera: str
    sequence: str | None
    captured_at: dt.datetime | None
    gt_boxes: list[dict] | None = None  # None = unlabeled; [] = labeled, nothing on the belt
    pred_boxes: list[dict] | None = None  # None = not scored by the chosen model
    model_version: str | None = None
    uncertainty: float | None = None
    uncertainty_scores: dict[str, float] | None = None
    selection: str | None = None
    selection_rank: int | None = None
    selection_reason: str | None = None
    dup_group: int | None = None  # frame id of the group's first member; None = no near-duplicate
    dup_group_size: int = 1
    has_embedding: bool = False

    @property
    def labeled(self) -> bool:
        return self.gt_boxes is not None

    def fingerprint(self) -> str:
        """Stable hash of every field the sample shows; a changed hash means 'update the sample'."""
        payload = asdict(self)
        payload["captured_at"] = self.captured_at.isoformat() if self.captured_at else None
        payload["build_version"] = SAMPLE_BUILD_VERSION
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def near_duplicate_groups(vectors: np.ndarray, threshold: float, *, block_rows: int = 2048) -> np.ndarray:
    """Connected components of the graph 'cosine distance < threshold'.

    ``vectors``: ``(N, D)`` float. Returns ``(N,)`` int64 group labels: the row of the group's first
    member (so a frame alone in its group gets its own row). Exact, computed blockwise in
    ``O(N^2 D)`` time and ``O(block_rows * N)`` memory: fine for the review set (thousands to a few
    ten thousand frames); selection's FAISS dedupe handles the millions.
    """
    n_rows = vectors.shape[0]
    parent = np.arange(n_rows)

    def find(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]
            row = parent[row]
        return row

    if n_rows == 0:
        return parent.astype(np.int64)
    unit = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.maximum(norms, 1e-12)
    min_similarity = 1.0 - threshold
    for start in range(0, n_rows, block_rows):
        sims = unit[start : start + block_rows] @ unit.T
        rows, cols = np.nonzero(sims > min_similarity)
        for row_in_block, col in zip(rows.tolist(), cols.tolist()):
            row = start + row_in_block
            if col <= row:
                continue
            root_a, root_b = find(row), find(col)
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)
    return np.array([find(row) for row in range(n_rows)], dtype=np.int64)


def _iou_xywh(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = min(ax + aw, bx + bw) - max(ax, bx)
    inter_h = min(ay + ah, by + bh) - max(ay, by)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match_any_boxes(gt_boxes: list[dict], pred_boxes: list[dict], iou_threshold: float = MATCH_IOU) -> tuple[list[dict], list[dict]]:
    """Class-agnostic COCO matching of one frame (boxes in ``xywh_px``).

    Predictions, most confident first, take the unmatched ground-truth box of highest IoU
    (>= ``iou_threshold``; on ties the later box, as FiftyOne does). Returns one dict per
    prediction and per ground-truth box, in input order: ``{"match": ..., "iou": float | None,
    "label": the matched box's label | None}`` with match ``tp`` (same class), ``confusion``
    (matched a box of another class), ``fp`` (prediction matched nothing) or ``fn`` (ground
    truth matched by nothing).
    """
    pred_info = [{"match": "fp", "iou": None, "label": None} for _ in pred_boxes]
    gt_info = [{"match": "fn", "iou": None, "label": None} for _ in gt_boxes]
    order = sorted(range(len(pred_boxes)), key=lambda k: -(pred_boxes[k].get("score") if pred_boxes[k].get("score") is not None else -1))
    for pred_row in order:
        pred = pred_boxes[pred_row]
        best_row, best_iou = None, iou_threshold
        for gt_row, gt in enumerate(gt_boxes):
            if gt_info[gt_row]["iou"] is not None:
                continue
            iou = _iou_xywh(pred["xywh_px"], gt["xywh_px"])
            if iou < best_iou:
                continue
            best_row, best_iou = gt_row, iou
        if best_row is None:
            continue
        gt = gt_boxes[best_row]
        outcome = "tp" if gt["label"] == pred["label"] else "confusion"
        pred_info[pred_row] = {"match": outcome, "iou": best_iou, "label": gt["label"]}
        gt_info[best_row] = {"match": outcome, "iou": best_iou, "label": pred["label"]}
    return pred_info, gt_info


# --------------------------------------------------------------------------- catalog -> records
@dataclass
class ReviewScope:
    """What the dataset was built from."""

    dataset_name: str
    model_version: str | None
    dataset_version: str | None
    selection: str | None


def _resolve_model_version(session, name: str | None) -> ModelVersion | None:
    if name:
        model = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if model is None:
            known = sorted(session.scalars(select(ModelVersion.name)).all())
            raise InputError(
                f"model version {name!r} is not in the catalog; known: {', '.join(known) or '(none; run beltcurate score)'}"
            )
        return model
    # Default: the newest model version that has predictions.
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.id.in_(select(Prediction.model_version_id)))
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        .limit(1)
    )


def _ground_truth_from_version(session, name: str) -> dict[int, list[dict]]:
    """frame id -> catalog boxes of an exported dataset version (read from its COCO, else YOLO, else VOC files)."""
    from pathlib import Path

    from exporters import EXPORTERS
    from exporters.versions import iter_frames, read_manifest

    version = session.scalar(select(DatasetVersion).where(DatasetVersion.name == name))
    if version is None:
        known = sorted(session.scalars(select(DatasetVersion.name)).all())
        raise InputError(f"dataset version {name!r} is not in the catalog; known: {', '.join(known) or '(none; run beltcurate export)'}")
    version_dir = Path(version.path)
    manifest = read_manifest(version_dir)
    fmt_name = next((fmt for fmt in ("coco", "yolo", "voc") if fmt in manifest.get("formats", [])), None)
    if fmt_name is None:
        raise InputError(f"dataset version {name!r} ({version_dir}) has no coco/yolo/voc labels to read")
    frame_of_file = {Path(row["file"]).name: int(row["frame_id"]) for row in iter_frames(version_dir)}
    ground_truth: dict[int, list[dict]] = {}
    for image in EXPORTERS.get(fmt_name).read_dataset(version_dir):
        frame_id = frame_of_file.get(Path(image.file_name).name)
        if frame_id is None:
            raise InputError(f"dataset version {name!r}: image {image.file_name!r} is not listed in frames.jsonl; the version is damaged")
        ground_truth[frame_id] = [box.to_catalog() for box in image.boxes]
    return ground_truth


def collect_records(
    catalog: Catalog,
    *,
    model_version: str | None = None,
    dataset_version: str | None = None,
    max_unlabeled: int = 2000,
    dataset_name: str = "beltcurate",
) -> tuple[ReviewScope, list[FrameRecord]]:
    """Read the frames the review dataset shows, ordered by frame id.

    In scope: every labeled frame (current accepted annotation, or the frames of
    ``dataset_version``), every frame of the newest selection, and the ``max_unlabeled`` most
    uncertain unlabeled frames scored by the model version.
    """
    with catalog.session() as session:
        model = _resolve_model_version(session, model_version)
        if dataset_version:
            gt_by_frame = _ground_truth_from_version(session, dataset_version)
        else:
            rows = session.execute(
                select(Annotation.frame_id, Annotation.boxes).where(Annotation.is_current.is_(True), Annotation.status == "accepted")
            ).all()
            gt_by_frame = {frame_id: list(boxes or []) for frame_id, boxes in rows}

        selection = session.scalar(select(Selection).order_by(Selection.created_at.desc(), Selection.id.desc()).limit(1))
        selection_items: dict[int, SelectionItem] = {}
        if selection is not None:
            selection_items = {
                item.frame_id: item
                for item in session.scalars(select(SelectionItem).where(SelectionItem.selection_id == selection.id))
            }

        predictions: dict[int, Prediction] = {}
        if model is not None:
            in_scope = sorted(set(gt_by_frame) | set(selection_items))
            for start in range(0, len(in_scope), SQL_CHUNK):
                chunk = in_scope[start : start + SQL_CHUNK]
                for prediction in session.scalars(
                    select(Prediction).where(Prediction.model_version_id == model.id, Prediction.frame_id.in_(chunk))
                ):
                    predictions[prediction.frame_id] = prediction
            # The most uncertain unlabeled frames: stream by uncertainty and skip the ones in scope
            # (no giant NOT IN list; stops after max_unlabeled).
            excluded = set(in_scope)
            taken = 0
            ranked = (
                select(Prediction)
                .where(Prediction.model_version_id == model.id)
                .order_by(Prediction.uncertainty.desc(), Prediction.frame_id)
                .execution_options(yield_per=1000)
            )
            if max_unlabeled > 0:
                for prediction in session.scalars(ranked):
                    if prediction.frame_id in excluded:
                        continue
                    predictions[prediction.frame_id] = prediction
                    taken += 1
                    if taken >= max_unlabeled:
                        break

        frame_ids = sorted(set(gt_by_frame) | set(selection_items) | set(predictions))
        frames = {frame.id: frame for frame in _frames_by_id(session, frame_ids)}
        missing = [frame_id for frame_id in frame_ids if frame_id not in frames]
        if missing:
            raise InputError(f"dataset version {dataset_version!r} names frames that are not in the catalog: {missing[:5]}")
        records = []
        for frame_id in frame_ids:
            frame = frames[frame_id]
            prediction = predictions.get(frame_id)
            item = selection_items.get(frame_id)
            records.append(
                FrameRecord(
                    frame_id=frame_id,
                    filepath=frame.path,
                    width=frame.width,
                    height=frame.height,
                    site=frame.site,
                    line=frame.line,
                    camera=frame.camera,
                    sequence=frame.sequence,
                    captured_at=frame.captured_at,
                    gt_boxes=gt_by_frame.get(frame_id),
                    pred_boxes=list(prediction.boxes or []) if prediction is not None else None,
                    model_version=model.name if prediction is not None else None,
                    uncertainty=float(prediction.uncertainty) if prediction is not None else None,
                    uncertainty_scores={k: float(v) for k, v in (prediction.scores or {}).items() if isinstance(v, (int, float))}
                    if prediction is not None
                    else None,
                    selection=selection.name if item is not None else None,
                    selection_rank=item.rank if item is not None else None,
                    selection_reason=item.reason if item is not None else None,
                )
            )
        scope = ReviewScope(
            dataset_name=dataset_name,
            model_version=model.name if model is not None else None,
            dataset_version=dataset_version,
            selection=selection.name if selection is not None else None,
        )
    return scope, records


def _frames_by_id(session, frame_ids: list[int]) -> Iterable[Frame]:
    for start in range(0, len(frame_ids), SQL_CHUNK):
        yield from session.scalars(select(Frame).where(Frame.id.in_(frame_ids[start : start + SQL_CHUNK])))


EmbeddingsFn = Callable[[list[int]], tuple[np.ndarray, np.ndarray]]


def vector_store_embeddings(settings, model_version: str) -> EmbeddingsFn:
    """``frame_ids -> (rows_found_mask (N,) bool, vectors (M, D) float32)`` from the vector store."""

    def lookup(frame_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        from active_learning.embeddings import VectorStore

        store = VectorStore(settings.state_dir / "vectors", model_version)
        rows = store.rows_for(np.asarray(frame_ids, dtype=np.int64))
        found = rows >= 0
        if not found.any():
            return found, np.zeros((0, 0), dtype=np.float32)
        return found, np.asarray(store.raw()[rows[found]], dtype=np.float32)

    return lookup


def attach_embeddings(records: list[FrameRecord], embeddings: EmbeddingsFn | None, dedupe_threshold: float) -> np.ndarray:
    """Mark which records have a vector, fill near-duplicate groups; returns ``(M, D)`` vectors of those."""
    if embeddings is None or not records:
        return np.zeros((0, 0), dtype=np.float32)
    found, vectors = embeddings([record.frame_id for record in records])
    with_vectors = [record for record, ok in zip(records, found.tolist()) if ok]
    if not with_vectors:
        return vectors
    groups = near_duplicate_groups(vectors, dedupe_threshold)
    sizes = np.bincount(groups, minlength=len(with_vectors))
    for row, record in enumerate(with_vectors):
        record.has_embedding = True
        size = int(sizes[groups[row]])
        record.dup_group = with_vectors[groups[row]].frame_id if size > 1 else None
        record.dup_group_size = size
    return vectors


# --------------------------------------------------------------------------- FiftyOne
def _fiftyone(settings):
    """Import fiftyone after pointing it at the right MongoDB (see curation.fomongo)."""
    from curation.fomongo import ensure_fiftyone_database

    ensure_fiftyone_database(settings)
    try:
        import fiftyone as fo
    except Exception as exc:  # fiftyone raises several types when its database is unusable
        raise ServiceError(f"fiftyone could not start: {exc}") from exc
    _route_fiftyone_logs_to_stderr()
    return fo


def _route_fiftyone_logs_to_stderr() -> None:
    """FiftyOne logs progress ("Evaluating detections...") on stdout; stdout is for results (--json)."""
    import logging

    for name in ("fiftyone", "fiftyone.brain", "eta"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


def _detections(boxes: list[dict], width: int, height: int):
    """Catalog boxes (absolute-pixel ``xywh_px``) -> ``fo.Detections`` (relative ``[x, y, w, h]``)."""
    from exporters.fiftyone import boxes_to_fo_detections
    from exporters.types import Box

    return boxes_to_fo_detections([Box.from_catalog(box) for box in boxes], width, height)


def _label_fields(record: FrameRecord) -> tuple[Any, Any]:
    gt = _detections(record.gt_boxes, record.width, record.height) if record.labeled else None
    preds = _detections(record.pred_boxes, record.width, record.height) if record.pred_boxes is not None else None
    if gt is not None and preds is not None:
        pred_info, gt_info = match_any_boxes(record.gt_boxes, record.pred_boxes)
        for detections, infos in ((preds, pred_info), (gt, gt_info)):
            for detection, info in zip(detections.detections, infos):
                detection[MATCH_ANY] = info["match"]
                detection[f"{MATCH_ANY}_iou"] = info["iou"]
                detection[f"{MATCH_ANY}_label"] = info["label"]
    return gt, preds


def _sample_fields(fo, record: FrameRecord) -> dict[str, Any]:
    ground_truth, predictions = _label_fields(record)
    return {
        "frame_id": record.frame_id,
        "filepath": record.filepath,
        "metadata": fo.ImageMetadata(width=record.width, height=record.height),
        "site": record.site,
        "line": record.line,
        "camera": record.camera,
        "sequence": record.sequence,
        "captured_at": record.captured_at,
        "labeled": record.labeled,
        "ground_truth": ground_truth,
        "predictions": predictions,
        "model_version": record.model_version,
        "uncertainty": record.uncertainty,
        "uncertainty_scores": record.uncertainty_scores,
        "selected": record.selection is not None,
        "selection": record.selection,
        "selection_rank": record.selection_rank,
        "selection_reason": record.selection_reason,
        "dup_group": record.dup_group,
        "dup_group_size": record.dup_group_size,
        "bc_fingerprint": record.fingerprint(),
    }


def _new_sample(fo, record: FrameRecord):
    fields = _sample_fields(fo, record)
    sample = fo.Sample(filepath=fields.pop("filepath"))
    for name, value in fields.items():
        sample[name] = value
    return sample


def _declare_fields(fo, dataset) -> None:
    """Declare every field up front so a first build where a field is always None still has it."""
    import fiftyone.core.fields as fof

    fields = {
        "frame_id": fof.IntField, "site": fof.StringField, "line": fof.StringField, "camera": fof.StringField,
        "sequence": fof.StringField, "captured_at": fof.DateTimeField, "labeled": fof.BooleanField,
        "model_version": fof.StringField, "uncertainty": fof.FloatField, "uncertainty_scores": fof.DictField,
        "selected": fof.BooleanField, "selection": fof.StringField, "selection_rank": fof.IntField,
        "selection_reason": fof.StringField, "dup_group": fof.IntField, "dup_group_size": fof.IntField,
        "bc_fingerprint": fof.StringField,
    }
    schema = dataset.get_field_schema()
    for name, kind in fields.items():
        if name not in schema:
            dataset.add_sample_field(name, kind)
    for name in ("ground_truth", "predictions"):
        if name not in schema:
            dataset.add_sample_field(name, fof.EmbeddedDocumentField, embedded_doc_type=fo.Detections)


@dataclass
class ReviewSummary:
    dataset: str
    model_version: str | None
    dataset_version: str | None
    selection: str | None
    frames: int
    labeled: int
    added: int
    updated: int
    removed: int
    unchanged: int
    evaluated: int = 0
    mAP: float | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    views: dict[str, int] = field(default_factory=dict)
    similarity_frames: int = 0
    near_duplicate_frames: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def as_dict(self) -> dict:
        return asdict(self)


def build_review_dataset(
    catalog: Catalog,
    settings,
    *,
    model_version: str | None = None,
    dataset_version: str | None = None,
    embeddings: EmbeddingsFn | None | str = "store",
    force: bool = False,
) -> ReviewSummary:
    """Create or update the FiftyOne dataset ``review.dataset`` from the catalog (incremental).

    ``embeddings``: ``"store"`` reads the vector store of the model version; a callable
    ``frame_ids -> (found (N,) bool, vectors (M, D))`` supplies them directly; None skips
    similarity and near-duplicates. ``force`` re-runs evaluation, views and the index even when
    no sample changed.
    """
    started = time.perf_counter()
    scope, records = collect_records(
        catalog,
        model_version=model_version,
        dataset_version=dataset_version,
        max_unlabeled=settings["review.max_unlabeled"],
        dataset_name=settings["review.dataset"],
    )
    if embeddings == "store":
        embeddings = vector_store_embeddings(settings, scope.model_version) if scope.model_version else None
    vectors = attach_embeddings(records, embeddings, settings["select.dedupe_threshold"])

    fo = _fiftyone(settings)
    name = scope.dataset_name
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
    else:
        dataset = fo.Dataset(name, persistent=True)
    _declare_fields(fo, dataset)

    existing_ids, existing_frames, existing_prints = dataset.values(["id", "frame_id", "bc_fingerprint"])
    sample_id_of = dict(zip(existing_frames, existing_ids))
    print_of = dict(zip(existing_frames, existing_prints))
    wanted = {record.frame_id: record for record in records}

    to_add = [record for record in records if record.frame_id not in print_of]
    to_update = [r for r in records if r.frame_id in print_of and print_of[r.frame_id] != r.fingerprint()]
    to_remove = [sample_id_of[frame_id] for frame_id in print_of if frame_id not in wanted]

    if to_remove:
        dataset.delete_samples(to_remove)
    if to_add:
        dataset.add_samples([_new_sample(fo, record) for record in to_add], progress=False)
    if to_update:
        by_field: dict[str, dict[int, Any]] = {}
        for record in to_update:
            for field_name, value in _sample_fields(fo, record).items():
                by_field.setdefault(field_name, {})[record.frame_id] = value
        for field_name, values in by_field.items():
            if field_name == "frame_id":
                continue
            dataset.set_values(field_name, values, key_field="frame_id")

    summary = ReviewSummary(
        dataset=name,
        model_version=scope.model_version,
        dataset_version=scope.dataset_version,
        selection=scope.selection,
        frames=len(records),
        labeled=sum(record.labeled for record in records),
        added=len(to_add),
        updated=len(to_update),
        removed=len(to_remove),
        unchanged=len(records) - len(to_add) - len(to_update),
        near_duplicate_frames=sum(record.dup_group is not None for record in records),
    )
    # dataset.info comes back as mongoengine dicts: make it plain data.
    info = json.loads(json.dumps(dataset.info.get("beltcurate", {}), default=str))
    stale = force or summary.changed or not info
    if stale:
        # Declares match_any*/eval* label attributes so the app's sidebar can filter on them.
        dataset.add_dynamic_sample_fields()
        info.update(_evaluate(dataset, fo))
        _save_views(dataset, settings)
        info["similarity_frames"] = _index_similarity(dataset, records, vectors)
        info["scope"] = asdict(scope)
        info["low_iou"] = settings["review.low_iou"]
        dataset.info["beltcurate"] = info
        dataset.save()
    summary.evaluated = info.get("evaluated", 0)
    summary.mAP = info.get("mAP")
    summary.per_class = info.get("per_class", {})
    summary.similarity_frames = info.get("similarity_frames", 0)
    summary.views = {view_name: len(dataset.load_saved_view(view_name)) for view_name in VIEW_NAMES}
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary


def _evaluation_view(dataset):
    from fiftyone import ViewField as F

    return dataset.match(F("labeled") == True).exists("predictions")  # noqa: E712 (a FiftyOne expression)


def _evaluate(dataset, fo) -> dict:
    """Run both evaluations on labeled frames with predictions; returns what dataset.info keeps."""
    if EVAL_KEY in dataset.list_evaluations():
        dataset.delete_evaluation(EVAL_KEY)
    view = _evaluation_view(dataset)
    if len(view) == 0:
        return {"evaluated": 0, "mAP": None, "per_class": {}}
    results = view.evaluate_detections(
        "predictions", gt_field="ground_truth", eval_key=EVAL_KEY, iou=MATCH_IOU, classwise=True,
        compute_mAP=True, progress=False,
    )
    report = results.report()
    per_class = {
        label: {metric: float(value) for metric, value in row.items()}
        for label, row in report.items()
        if isinstance(row, dict)
    }
    mAP = float(results.mAP())
    return {"evaluated": len(view), "mAP": None if mAP < 0 else mAP, "per_class": per_class}


def saved_view_stages(dataset, settings) -> dict[str, Any]:
    """The saved views as FiftyOne view objects (see the module docstring)."""
    from fiftyone import ViewField as F

    fp_min = settings["review.fp_min_confidence"]
    low_iou = settings["review.low_iou"]
    plain_fp = F(MATCH_ANY) == "fp"
    plain_fn = F(MATCH_ANY) == "fn"
    confusion = F(MATCH_ANY) == "confusion"
    return {
        VIEW_FALSE_POSITIVES: dataset.filter_labels("predictions", plain_fp & (F("confidence") >= fp_min)).sort_by(
            F("predictions.detections.confidence").max(), reverse=True
        ),
        VIEW_MISSED: dataset.filter_labels("ground_truth", plain_fn).sort_by(
            F("ground_truth.detections").length(), reverse=True
        ),
        VIEW_POOR_LOCALIZATION: dataset.filter_labels(
            "predictions", (F(EVAL_KEY) == "tp") & (F(f"{EVAL_KEY}_iou") < low_iou)
        ).sort_by(F(f"predictions.detections.{EVAL_KEY}_iou").min()),
        VIEW_CONFUSIONS: dataset.filter_labels("predictions", confusion).sort_by(
            F("predictions.detections.confidence").max(), reverse=True
        ),
        VIEW_UNCERTAIN: dataset.match((F("labeled") == False) & (F("uncertainty") != None)).sort_by(  # noqa: E711,E712
            "uncertainty", reverse=True
        ),
        VIEW_SELECTION: dataset.match(F("selected") == True).sort_by("selection_rank"),  # noqa: E712
        VIEW_NEAR_DUPLICATES: dataset.match(F("dup_group_size") > 1).sort_by([("dup_group", 1), ("frame_id", 1)]),
    }


def _save_views(dataset, settings) -> None:
    for view_name, view in saved_view_stages(dataset, settings).items():
        dataset.save_view(view_name, view, description=VIEW_DESCRIPTIONS[view_name], overwrite=True)


def _index_similarity(dataset, records: list[FrameRecord], vectors: np.ndarray) -> int:
    """(Re)build the sklearn similarity index from our precomputed vectors; returns its size."""
    import fiftyone.brain as fob

    if SIMILARITY_BRAIN_KEY in dataset.list_brain_runs():
        dataset.delete_brain_run(SIMILARITY_BRAIN_KEY)
    frame_ids = [record.frame_id for record in records if record.has_embedding]
    if not frame_ids:
        return 0
    sample_id_of = dict(zip(*dataset.values(["frame_id", "id"])))
    view = dataset.select([sample_id_of[frame_id] for frame_id in frame_ids], ordered=True)
    # embeddings= is always passed: without it brain downloads a model from the zoo.
    fob.compute_similarity(
        view, embeddings=np.asarray(vectors, dtype=np.float32), backend="sklearn", metric="cosine",
        brain_key=SIMILARITY_BRAIN_KEY, progress=False,
    )
    return len(frame_ids)


def open_review_dataset(settings):
    """The persistent review dataset; InputError when it has not been built yet."""
    fo = _fiftyone(settings)
    name = settings["review.dataset"]
    if not fo.dataset_exists(name):
        raise InputError(f"review dataset {name!r} does not exist yet; run 'beltcurate review' first")
    return fo.load_dataset(name)


def view_frame_ids(settings, view_name: str) -> list[int]:
    """Frame ids of a saved view, in the view's order."""
    dataset = open_review_dataset(settings)
    names = dataset.list_saved_views()
    if view_name not in names:
        raise InputError(f"no saved view {view_name!r} in review dataset {dataset.name!r}; valid: {', '.join(sorted(names))}")
    return [int(frame_id) for frame_id in dataset.load_saved_view(view_name).values("frame_id")]


def send_view_to_labelstudio(catalog: Catalog, settings, view_name: str, *, labelstudio_config=None) -> dict:
    """Push the frames of a saved view to Label Studio's relabel project, pre-annotated with
    their current labels (``curation.labelstudio.push_relabel``; idempotent per frame).

    ``labelstudio_config``: a :class:`curation.labelstudio.LabelStudioConfig`; default: from ``settings``.
    """
    frame_ids = view_frame_ids(settings, view_name)
    result = {"view": view_name, "frames": len(frame_ids), "push": None}
    if frame_ids:
        from curation.labelstudio import push_relabel

        summary = push_relabel(catalog, labelstudio_config or settings, frame_ids, reason=f"FiftyOne review view '{view_name}'")
        result["push"] = summary.as_dict()
    return result


def error_table(dataset) -> "Any":
    """One row per evaluated box as a pandas DataFrame (for notebooks and reports).

    Columns: frame_id, site, camera, uncertainty, kind ('pred' | 'gt'), label, confidence,
    outcome ('tp' | 'fp' | 'fn' of the classwise evaluation), iou (of the classwise match),
    error ('ok' | 'poor_localization' | 'confusion' | 'false_positive' | 'missed') and
    other_label (the class on the other side of a confusion). Only labeled frames with
    predictions are in it.
    """
    import pandas as pd

    columns = ["frame_id", "site", "camera", "uncertainty", "kind", "label", "confidence", "outcome", "iou", "error", "other_label"]
    low_iou = dataset.info.get("beltcurate", {}).get("low_iou", 0.0)
    rows = []
    fields = ["frame_id", "site", "camera", "uncertainty", "ground_truth", "predictions"]
    for frame_id, site, camera, uncertainty, gt, preds in zip(*_evaluation_view(dataset).values(fields)):
        for kind, detections in (("pred", preds), ("gt", gt)):
            for det in detections.detections if detections is not None else []:
                outcome = det[EVAL_KEY] if det.has_field(EVAL_KEY) else None
                iou = det[f"{EVAL_KEY}_iou"] if det.has_field(f"{EVAL_KEY}_iou") else None
                match_any = det[MATCH_ANY] if det.has_field(MATCH_ANY) else None
                if outcome == "tp":
                    error = "poor_localization" if kind == "pred" and iou is not None and iou < low_iou else "ok"
                elif match_any == "confusion":
                    error = "confusion"
                else:
                    error = "false_positive" if kind == "pred" else "missed"
                other = det[f"{MATCH_ANY}_label"] if error == "confusion" else None
                rows.append(dict(zip(columns, (frame_id, site, camera, uncertainty, kind, det.label, det.confidence,
                                               outcome, iou, error, other))))
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- the app
def view_urls(settings, port: int | None = None) -> dict[str, str]:
    """URL of each saved view on the app at 127.0.0.1 (slug == view name)."""
    from urllib.parse import quote

    base = f"http://127.0.0.1:{port or settings['review.port']}/datasets/{quote(settings['review.dataset'])}"
    return {"dataset": base, **{name: f"{base}?view={name}" for name in VIEW_NAMES}}


@dataclass
class AppServer:
    """A running FiftyOne app server process (``python -m fiftyone.server.main``)."""

    process: subprocess.Popen
    port: int
    log_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def launch_app(settings, *, port: int | None = None, log_dir=None) -> AppServer:
    """Serve the FiftyOne app on 127.0.0.1 against beltcurate's database; returns once it answers.

    The server is a child process (up in ~7 s, ~290 MB); ``fo.launch_app`` is not used (30 s and a
    1.2 GB process tree that lingers after kill).
    """
    import urllib.request

    from curation.fomongo import configure_fiftyone_env, ensure_fiftyone_database

    database = ensure_fiftyone_database(settings)
    port = port or settings["review.port"]
    if not _port_is_free(port):
        raise ServiceError(f"port {port} on 127.0.0.1 is in use; stop what runs there or set review.port (BELTCURATE_REVIEW_PORT)")
    env = configure_fiftyone_env(database.uri, database.database_name, dict(os.environ))
    log_dir = settings.state_dir if log_dir is None else log_dir
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, "fiftyone-app.log")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fiftyone.server.main", "--address", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    server = AppServer(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"the FiftyOne app exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{server.url}/", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise ServiceError(f"the FiftyOne app did not answer on port {port} within {APP_START_TIMEOUT_S:.0f} s; see {log_path}")


def review(
    catalog: Catalog,
    settings,
    *,
    model_version: str | None = None,
    dataset_version: str | None = None,
    send_view: str | None = None,
    port: int | None = None,
    force: bool = False,
) -> dict:
    """Build/update the review dataset, optionally send a view's frames to Label Studio.

    Returns the summary with ``urls`` (each saved view on the app) and, with ``send_view``, ``sent``.
    """
    summary = build_review_dataset(catalog, settings, model_version=model_version, dataset_version=dataset_version, force=force)
    result = summary.as_dict()
    result["urls"] = view_urls(settings, port)
    if send_view:
        result["sent"] = send_view_to_labelstudio(catalog, settings, send_view)
    return result


def serve_until_interrupted(server: AppServer, poll_s: float = 0.5) -> int:
    """Block while the app runs; Ctrl-C (or SIGTERM) stops it. Returns the server's exit code."""
    import signal

    def on_term(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while server.process.poll() is None:
            time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    return server.process.returncode
