"""Scoring glue: which frames still need a model's predictions, and writing them in chunks.

``score_frames`` runs a detector checkpoint over every frame the catalog has not scored with that
model version yet; ``import_predictions`` does the same from a COCO results file made by a
detector that runs elsewhere (YOLO on the robot, TensorFlow). Both write, per chunk of frames:

1. the embeddings to the vector store (``state_dir/vectors/<model_version>``; skips stored ids),
2. one ``Prediction`` row per frame, in ONE transaction, skipping frames that already have one.

A crash therefore loses at most the chunk in flight, and a rerun resumes without duplicates
(the ``uq_prediction_frame_model`` constraint backs this up). Each call leaves a ``ScoringRun``.
No torch here: the detector lives in ``active_learning`` and is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from curation.catalog import Catalog, Frame, ModelVersion, Prediction, ScoringRun, utcnow
from curation.errors import InputError
from curation.processes import pid_alive as _pid_alive

Advance = Callable[[int], None]
MAX_REPORTED_FAILURES = 10


def _noop(_n: int = 1) -> None:
    return None


@dataclass
class ScoreSummary:
    model_version: str
    model_version_id: int
    engine: str
    scoring_run_id: int
    scored: int = 0  # new Prediction rows written by this call
    already_scored: int = 0  # frames in scope that had a prediction of this model before the call
    remaining: int = 0  # frames in scope still without a prediction after the call
    failed: int = 0  # frames that could not be decoded (no row written; retried next time)
    failed_frames: list[dict] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0  # the whole call, model loading included
    load_seconds: float = 0.0  # loading the model and finding the frames to score
    frames_per_s: float = 0.0  # scored frames per second of the scoring loop (after loading)
    embedding_dim: int | None = None
    vectors: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vector_root(settings) -> Path:
    return settings.state_dir / "vectors"


def ensure_model_version(catalog: Catalog, *, name: str, arch: str, classes: Sequence[str],
                         checkpoint_path: str | None, checkpoint_hash: str | None, meta: dict) -> ModelVersion:
    """The ``ModelVersion`` row of ``name``, created on first use.

    One name means one model: a second checkpoint (other bytes or other classes) under an existing
    name is refused, since its predictions would mix with the first one's.
    """
    with catalog.session() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if row is None:
            row = ModelVersion(name=name, arch=arch, checkpoint_path=checkpoint_path, checkpoint_hash=checkpoint_hash,
                               classes=list(classes), meta=meta)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # another process created it a moment ago
                session.rollback()
                row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if list(row.classes) != list(classes):
            raise InputError(f"model version {name!r} is in the catalog with classes {row.classes}, this one has "
                             f"{list(classes)}; give the new model its own model_version")
        if row.checkpoint_hash and checkpoint_hash and row.checkpoint_hash != checkpoint_hash:
            raise InputError(
                f"model version {name!r} was scored with another checkpoint (sha256 {row.checkpoint_hash[:12]}..., "
                f"now {checkpoint_hash[:12]}...); give the new checkpoint its own model_version"
            )
        return row




def _close_stale_runs(catalog: Catalog, model_version_id: int) -> None:
    """Runs of this host whose process died (kill -9, power loss) are marked ``interrupted``."""
    host = socket.gethostname()
    with catalog.session() as session:
        stale = session.scalars(select(ScoringRun).where(ScoringRun.model_version_id == model_version_id,
                                                         ScoringRun.status == "running")).all()
        for run in stale:
            meta = run.meta or {}
            if meta.get("host") == host and meta.get("pid") and not _pid_alive(int(meta["pid"])):
                run.status = "interrupted"
                run.finished_at = utcnow()


def _scope(query, site: str | None):
    return query.where(Frame.site == site) if site else query


def pending_frames(catalog: Catalog, model_version_id: int | None, *, frame_ids: Sequence[int] | None = None,
                   limit: int | None = None, site: str | None = None) -> list[tuple[int, str]]:
    """(frame_id, path) of frames without a prediction of this model, oldest id first."""
    with catalog.session() as session:
        query = select(Frame.id, Frame.path).order_by(Frame.id)
        if model_version_id is not None:
            scored = select(Prediction.frame_id).where(Prediction.model_version_id == model_version_id)
            query = query.where(Frame.id.not_in(scored))
        rows = session.execute(_scope(query, site)).all()
    if frame_ids is not None:
        wanted = {int(f) for f in frame_ids}
        rows = [row for row in rows if row[0] in wanted]
    if limit is not None:
        rows = rows[: max(0, limit)]
    return [(int(frame_id), path) for frame_id, path in rows]


def _count_scored(catalog: Catalog, model_version_id: int, site: str | None, frame_ids: Sequence[int] | None) -> int:
    with catalog.session() as session:
        query = select(Prediction.frame_id).join(Frame, Frame.id == Prediction.frame_id).where(
            Prediction.model_version_id == model_version_id)
        ids = session.scalars(_scope(query, site)).all()
    if frame_ids is not None:
        wanted = {int(f) for f in frame_ids}
        return sum(1 for f in ids if f in wanted)
    return len(ids)


def _count_in_scope(catalog: Catalog, site: str | None, frame_ids: Sequence[int] | None) -> int:
    if frame_ids is not None:
        with catalog.session() as session:
            ids = set(session.scalars(_scope(select(Frame.id), site)).all())
        return len(ids & {int(f) for f in frame_ids})
    with catalog.session() as session:
        return int(session.scalar(_scope(select(func.count(Frame.id)), site)) or 0)


def _commit_chunk(catalog: Catalog, store, model_version_id: int, run_id: int, results: Sequence) -> int:
    """Write one chunk of FrameResults: vectors first, then all Prediction rows in one transaction."""
    good = [r for r in results if r.error is None]
    if not good:
        return 0
    with_embedding = [r for r in good if r.embedding is not None]
    rows_by_frame: dict[int, int] = {}
    if with_embedding and store is not None:
        ids = np.array([r.frame_id for r in with_embedding], dtype=np.int64)
        store.append(ids, np.stack([r.embedding for r in with_embedding]))
        rows_by_frame = dict(zip(ids.tolist(), store.rows_for(ids).tolist()))
    for attempt in range(2):
        try:
            with catalog.session() as session:
                existing = set(session.scalars(select(Prediction.frame_id).where(
                    Prediction.model_version_id == model_version_id,
                    Prediction.frame_id.in_([r.frame_id for r in good]))).all())
                added = 0
                for r in good:
                    if r.frame_id in existing:
                        continue
                    row = rows_by_frame.get(r.frame_id)
                    session.add(Prediction(frame_id=r.frame_id, model_version_id=model_version_id, scoring_run_id=run_id,
                                           boxes=r.boxes, scores=r.scores, uncertainty=float(r.uncertainty),
                                           embedding_row=None if row is None or row < 0 else int(row)))
                    existing.add(r.frame_id)
                    added += 1
                run = session.get(ScoringRun, run_id)
                run.n_frames = (run.n_frames or 0) + added
            return added
        except IntegrityError:  # a concurrent scorer wrote some of these frames first: recount and retry
            if attempt:
                raise
    return 0


def _write_results(catalog: Catalog, settings, store, model_version: ModelVersion, run_id: int,
                   batches: Iterable[list], summary: ScoreSummary, advance: Advance) -> None:
    chunk_size = max(1, int(settings["score.chunk_size"]))
    buffer: list = []
    for batch in batches:
        buffer.extend(batch)
        advance(len(batch))
        for result in batch:
            if result.error is not None:
                summary.failed += 1
                if len(summary.failed_frames) < MAX_REPORTED_FAILURES:
                    summary.failed_frames.append({"frame_id": result.frame_id, "error": result.error})
        if len(buffer) >= chunk_size:
            summary.scored += _commit_chunk(catalog, store, model_version.id, run_id, buffer)
            summary.chunks += 1
            buffer = []
    if buffer:
        summary.scored += _commit_chunk(catalog, store, model_version.id, run_id, buffer)
        summary.chunks += 1


def _start_run(catalog: Catalog, model_version_id: int, engine: str, meta: dict) -> int:
    _close_stale_runs(catalog, model_version_id)
    with catalog.session() as session:
        run = ScoringRun(model_version_id=model_version_id, engine=engine, status="running", n_frames=0,
                         meta={**meta, "pid": os.getpid(), "host": socket.gethostname()})
        session.add(run)
        session.flush()
        return run.id


def _finish_run(catalog: Catalog, run_id: int, status: str, extra: dict | None = None) -> None:
    with catalog.session() as session:
        run = session.get(ScoringRun, run_id)
        run.status = status
        run.finished_at = utcnow()
        if extra:
            run.meta = {**(run.meta or {}), **extra}


def scoring_config(settings, detector_meta: dict | None, classes: Sequence[str]):
    """ScoringConfig from settings; class-difficulty weights from the checkpoint's eval block."""
    from active_learning.engine import ScoringConfig
    from active_learning.uncertainty import class_difficulty_weights

    evaluation = (detector_meta or {}).get("eval") or {}
    train_meta = (detector_meta or {}).get("train") or {}
    weights = class_difficulty_weights(classes, per_class_ap=evaluation.get("per_class_ap50"),
                                       class_counts=train_meta.get("class_counts"))
    return ScoringConfig(
        ranking=settings["score.uncertainty"], tta_flip=bool(settings["score.tta_flip"]),
        class_weights=[round(float(w), 6) for w in weights], store_min_score=float(settings["score.store_min_score"]),
        batch_size=int(settings["score.batch_size"]), workers=int(settings["score.workers"]),
    ).validate()


def score_frames(catalog: Catalog, settings, checkpoint_path: str | os.PathLike, *,
                 frame_ids: Sequence[int] | None = None, limit: int | None = None, site: str | None = None,
                 engine: str = "local", advance: Advance = _noop, detector=None) -> ScoreSummary:
    """Score the frames the catalog has no prediction for from this checkpoint's model version.

    ``frame_ids``/``site``/``limit`` narrow the scope (``limit``: the oldest unscored frames first).
    ``engine``: "local" (DataLoader) or "ray" (Ray Data actor pool; setting score.ray_*).
    ``detector``: an already loaded detector for ``checkpoint_path`` (the simulation reuses one).
    Rerunning after success is a no-op; after a crash it finishes the remaining frames.
    """
    from active_learning.detectors import load_detector
    from active_learning.embeddings import VectorStore
    from active_learning.engine import iter_local, iter_ray

    if engine not in ("local", "ray"):
        raise InputError(f"unknown scoring engine {engine!r}; valid: local, ray")
    started = time.perf_counter()
    checkpoint_path = Path(checkpoint_path)
    detector = detector or load_detector(checkpoint_path)
    meta = dict(getattr(detector, "meta", {}) or {})
    model_version = ensure_model_version(
        catalog, name=detector.model_version, arch=detector.arch, classes=detector.classes,
        checkpoint_path=str(checkpoint_path.resolve()), checkpoint_hash=file_sha256(checkpoint_path),
        meta={k: meta[k] for k in ("input_size", "arch_params", "train", "eval") if k in meta},
    )
    config = scoring_config(settings, meta, detector.classes)
    already = _count_scored(catalog, model_version.id, site, frame_ids)
    frames = pending_frames(catalog, model_version.id, frame_ids=frame_ids, limit=limit, site=site)
    run_id = _start_run(catalog, model_version.id, engine, {"checkpoint": str(checkpoint_path), "limit": limit,
                                                            "site": site, "ranking": config.ranking})
    store = VectorStore(vector_root(settings), model_version.name)
    summary = ScoreSummary(model_version.name, model_version.id, engine, run_id, already_scored=already,
                           vectors=str(store.path))
    loop_started = time.perf_counter()
    summary.load_seconds = round(loop_started - started, 3)
    try:
        if engine == "ray":
            batches: Iterator = iter_ray(checkpoint_path, frames, config, actors=int(settings["score.ray_actors"]),
                                         address=settings["score.ray_address"])
        else:
            batches = iter_local(detector, frames, config)
        _write_results(catalog, settings, store, model_version, run_id, batches, summary, advance)
    except BaseException as exc:
        _finish_run(catalog, run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    loop_seconds = time.perf_counter() - loop_started
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.frames_per_s = round(summary.scored / loop_seconds, 2) if loop_seconds > 0 else 0.0
    summary.remaining = _count_in_scope(catalog, site, frame_ids) - _count_scored(catalog, model_version.id, site, frame_ids)
    summary.embedding_dim = store.dim
    _finish_run(catalog, run_id, "done", {"scored": summary.scored, "failed": summary.failed,
                                          "seconds": summary.seconds})
    return summary


def pending_count(catalog: Catalog, model_version: str, *, limit: int | None = None, site: str | None = None) -> int:
    """How many frames ``score_frames`` would score for ``model_version`` (for a progress bar total)."""
    with catalog.session() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == model_version))
    count = len(pending_frames(catalog, row.id if row else None, site=site))
    return min(count, limit) if limit is not None else count


# ----------------------------------------------------------------------------- predictions import
def read_class_map(path: str | os.PathLike) -> list[str]:
    """A class map file: a YAML or JSON list of class names (id order)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"class map {str(path)!r} cannot be read ({exc}); it must be a YAML/JSON list of names") from exc
    if isinstance(data, dict) and "names" in data:  # Ultralytics data.yaml
        names = data["names"]
        data = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
    if not isinstance(data, list) or not data or not all(isinstance(n, str) for n in data):
        raise InputError(f"class map {str(path)!r} must be a non-empty list of class names")
    return data


def default_classes(settings) -> list[str]:
    if settings["classes"]:
        return read_class_map(settings.resolve_path(settings["classes"]))
    from curation.synth import CLASSES

    return list(CLASSES)


class _SuffixIndex:
    """file_name (relative path) -> frame id, matched against the end of catalog frame paths."""

    def __init__(self, frames: Sequence[tuple[int, str]]):
        self.frames = frames
        self._by_k: dict[int, dict[tuple[str, ...], int | None]] = {}
        self._by_path = {os.path.normpath(path): frame_id for frame_id, path in frames}

    def find(self, file_name: str) -> int | None:
        if os.path.isabs(file_name):
            return self._by_path.get(os.path.normpath(file_name))
        parts = tuple(Path(file_name).parts)
        k = len(parts)
        if k not in self._by_k:
            index: dict[tuple[str, ...], int | None] = {}
            for frame_id, path in self.frames:
                key = tuple(Path(path).parts[-k:])
                index[key] = None if key in index else frame_id  # None marks an ambiguous suffix
            self._by_k[k] = index
        if parts in self._by_k[k] and self._by_k[k][parts] is None:
            raise InputError(f"file_name {file_name!r} matches several catalog frames; use a longer relative path")
        return self._by_k[k].get(parts)


def _load_results(path: str | os.PathLike) -> list[dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"predictions file {str(path)!r} is not readable JSON ({exc})") from exc
    if isinstance(data, dict) and "annotations" in data:  # a COCO file with scored annotations
        data = data["annotations"]
    if not isinstance(data, list):
        raise InputError(f"predictions file {str(path)!r} must be a COCO results list "
                         "[{image_id, category_id, bbox: [x, y, w, h], score}, ...]")
    for i, entry in enumerate(data[:1000]):
        missing = [k for k in ("category_id", "bbox", "score") if k not in entry]
        if missing or ("image_id" not in entry and "file_name" not in entry):
            raise InputError(f"predictions file {str(path)!r} entry {i} lacks {missing or ['image_id']}; "
                             "COCO results need image_id, category_id, bbox, score")
    return data


def _load_embeddings(path: str | os.PathLike, image_order: Sequence | None) -> dict:
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                if "image_ids" not in data or "embeddings" not in data:
                    raise InputError(f"embeddings {str(path)!r} must hold arrays 'image_ids' (N,) and 'embeddings' (N, D)")
                ids, vectors = data["image_ids"], data["embeddings"]
        else:
            vectors = np.load(path)
            if image_order is None:
                raise InputError(f"embeddings {str(path)!r} is a plain .npy: also pass --images-json (its rows "
                                 "follow that file's images), or use .npz with image_ids + embeddings")
            ids = np.asarray(image_order)
    except (OSError, ValueError) as exc:
        raise InputError(f"embeddings {str(path)!r} cannot be read ({exc})") from exc
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise InputError(f"embeddings {str(path)!r}: {len(ids)} ids but vectors of shape {vectors.shape}")
    return {(int(i) if not isinstance(i, str) else i): vectors[k].astype(np.float32) for k, i in enumerate(ids.tolist())}


def import_predictions(catalog: Catalog, settings, results_json: str | os.PathLike, *, model_version: str | None,
                       images_json: str | os.PathLike | None = None, classes_file: str | os.PathLike | None = None,
                       embeddings: str | os.PathLike | None = None, advance: Advance = _noop) -> ScoreSummary:
    """Import a COCO results file (``[{image_id, category_id, bbox, score, probs?}]``) as predictions.

    Frames: ``images_json`` (COCO ``images`` with ``id`` + ``file_name``) maps image ids to frames
    by the end of their paths, and every image it lists gets a prediction (no boxes = empty frame);
    without it ``image_id`` must be the catalog frame id (or an entry carries ``file_name``).
    Classes: the categories of ``images_json``, else ``classes_file`` / setting ``classes``
    (category_id k = k-th class, 1-based). Optional per-box ``probs`` (alias ``class_scores``):
    C per-class scores (treated as sigmoid scores) or C+1 with background last (softmax).
    Without them uncertainty comes from the top score alone (weaker; see active_learning.uncertainty).
    """
    from active_learning.embeddings import VectorStore
    from active_learning.engine import ScoringConfig, results_from_detections

    if not model_version:
        raise InputError("--predictions needs --model-version NAME: the detector that made them")
    started = time.perf_counter()
    results = _load_results(results_json)
    image_entries = None
    if images_json is not None:
        try:
            coco = json.loads(Path(images_json).read_text())
            image_entries = coco["images"]
            categories = sorted(coco.get("categories") or [], key=lambda c: c["id"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"--images-json {str(images_json)!r} is not a COCO file with 'images' ({exc})") from exc
    else:
        categories = []
    if categories:
        classes = [c["name"] for c in categories]
        name_of = {c["id"]: c["name"] for c in categories}
    else:
        classes = read_class_map(classes_file) if classes_file else default_classes(settings)
        name_of = {k + 1: name for k, name in enumerate(classes)}
    index_of = {name: k for k, name in enumerate(classes)}

    with catalog.session() as session:
        all_frames = [(int(i), p) for i, p in session.execute(select(Frame.id, Frame.path)).all()]
    known_ids = {frame_id for frame_id, _ in all_frames}
    suffixes = _SuffixIndex(all_frames)
    frame_of_image: dict = {}
    unmatched: list[str] = []
    if image_entries is not None:
        for entry in image_entries:
            frame_id = suffixes.find(entry["file_name"])
            if frame_id is None:
                unmatched.append(entry["file_name"])
            else:
                frame_of_image[entry["id"]] = frame_id
    boxes_by_frame: dict[int, list[dict]] = {frame_id: [] for frame_id in frame_of_image.values()}
    for entry in results:
        if "file_name" in entry:
            frame_id = suffixes.find(entry["file_name"])
        elif image_entries is not None:
            frame_id = frame_of_image.get(entry["image_id"])
        else:
            frame_id = int(entry["image_id"]) if int(entry["image_id"]) in known_ids else None
        if frame_id is None:
            unmatched.append(str(entry.get("file_name", entry.get("image_id"))))
            continue
        if entry["category_id"] not in name_of:
            raise InputError(f"predictions file {str(results_json)!r}: category_id {entry['category_id']} is not in the "
                             f"class map ({len(classes)} classes, ids 1..{len(classes)}); pass --classes or --images-json")
        boxes_by_frame.setdefault(frame_id, []).append(entry)
    if not boxes_by_frame:
        raise InputError(f"none of the images in {str(results_json)!r} match a catalog frame "
                         f"(e.g. {unmatched[:3]}); ingest the frames first or pass --images-json")
    vectors = None
    if embeddings is not None:
        by_image = _load_embeddings(embeddings, [e["id"] for e in image_entries] if image_entries else None)
        vectors = {}
        for image_id, vector in by_image.items():
            frame_id = frame_of_image.get(image_id) if image_entries is not None else (
                image_id if image_id in known_ids else None)
            if frame_id is not None:
                vectors[frame_id] = vector

    model_row = ensure_model_version(catalog, name=model_version, arch="external", classes=classes,
                                     checkpoint_path=str(Path(results_json).resolve()), checkpoint_hash=None,
                                     meta={"source": "predictions", "file": str(results_json)})
    config = ScoringConfig(ranking=settings["score.uncertainty"], store_min_score=0.0,
                           max_stored_boxes=10_000).validate()
    already = _count_scored(catalog, model_row.id, None, list(boxes_by_frame))
    todo = {f for f, _ in pending_frames(catalog, model_row.id, frame_ids=list(boxes_by_frame))}
    run_id = _start_run(catalog, model_row.id, "import", {"predictions": str(results_json)})
    store = VectorStore(vector_root(settings), model_row.name)
    summary = ScoreSummary(model_row.name, model_row.id, "import", run_id, already_scored=already,
                           vectors=str(store.path))

    def batches() -> Iterator[list]:
        frame_ids = sorted(todo)
        for start in range(0, len(frame_ids), 256):
            chunk_ids = frame_ids[start: start + 256]
            detections = [_detections_from_results(boxes_by_frame[f], name_of, index_of, vectors, f) for f in chunk_ids]
            yield results_from_detections(chunk_ids, detections, classes, config)

    try:
        _write_results(catalog, settings, store, model_row, run_id, batches(), summary, advance)
    except BaseException as exc:
        _finish_run(catalog, run_id, "failed", {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    summary.failed = len(unmatched)
    summary.failed_frames = [{"image": name, "error": "no catalog frame with this path/id"} for name in unmatched[:10]]
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.frames_per_s = round(summary.scored / summary.seconds, 2) if summary.seconds else 0.0
    summary.embedding_dim = store.dim
    _finish_run(catalog, run_id, "done", {"scored": summary.scored, "unmatched": len(unmatched)})
    return summary


def _detections_from_results(entries: list[dict], name_of: dict, index_of: dict, vectors: dict | None, frame_id: int):
    from active_learning.detectors import Detections

    n_classes = len(index_of)
    boxes, labels, scores, probs = [], [], [], []
    kind: str | None = None
    for entry in entries:
        x, y, w, h = (float(v) for v in entry["bbox"])
        boxes.append([x, y, x + w, y + h])
        labels.append(index_of[name_of[entry["category_id"]]])
        scores.append(float(entry["score"]))
        per_class = entry.get("probs", entry.get("class_scores"))
        if per_class is not None:
            if len(per_class) == n_classes + 1:
                entry_kind = "softmax"
            elif len(per_class) == n_classes:
                entry_kind = "sigmoid"
            else:
                raise InputError(f"a prediction of frame {frame_id} has {len(per_class)} per-class scores; expected "
                                 f"{n_classes} (one per class) or {n_classes + 1} (background last)")
            if kind not in (None, entry_kind):
                raise InputError(f"predictions of frame {frame_id} mix {kind} and {entry_kind} per-class scores")
            kind = entry_kind
            probs.append(per_class)
    if probs and len(probs) != len(entries):
        raise InputError(f"predictions of frame {frame_id}: some boxes have per-class scores and some do not")
    embedding = None if vectors is None else vectors.get(frame_id)
    return Detections(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels, scores,
                      np.asarray(probs, dtype=np.float32) if probs else None, embedding, kind if probs else None)
