"""Batched scoring: frames in, ``FrameResult`` (catalog boxes, uncertainty scores, embedding) out.

One per-batch function, ``score_images``, does the work; two engines feed it:

- ``iter_local``: a torch DataLoader whose worker processes decode JPEGs while the main process
  runs the forward pass (``torch.inference_mode``);
- ``iter_ray``: the same function inside a Ray Data ``map_batches`` actor pool (each actor loads
  the detector once), for when one machine is not enough.

Both yield lists of ``FrameResult`` batch by batch; the caller (``curation.scoring``) commits
them to the catalog in chunks. Results do not depend on the engine (tests/test_engine.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from active_learning.uncertainty import DEFAULT_SCORE, NEEDS_FLIP, UNCERTAINTY, compute_scores

# Boxes below this score feed the uncertainty scores but are not written to the catalog: a
# 100-box tail per frame would make the predictions table ~15 KB per frame.
DEFAULT_STORE_MIN_SCORE = 0.1
DEFAULT_MAX_STORED_BOXES = 50
PROB_DECIMALS = 4  # stored probabilities; 1e-4 is far below any ranking difference
BOX_DECIMALS = 2  # stored pixel coordinates


@dataclass
class ScoringConfig:
    """How a batch of detections becomes catalog rows (plain data: it travels to Ray actors)."""

    ranking: str = DEFAULT_SCORE
    tta_flip: bool = False
    class_weights: list[float] | None = None
    store_min_score: float = DEFAULT_STORE_MIN_SCORE
    max_stored_boxes: int = DEFAULT_MAX_STORED_BOXES
    batch_size: int = 8
    workers: int = 1
    torch_threads: int | None = None  # None: torch's default (all cores)

    def validate(self) -> "ScoringConfig":
        UNCERTAINTY.get(self.ranking)  # raises UnknownNameError listing the valid names
        if self.ranking in NEEDS_FLIP and not self.tta_flip:
            from curation.errors import ConfigError

            raise ConfigError(f"score.uncertainty={self.ranking} needs the flipped pass; set score.tta_flip=true")
        return self


@dataclass
class FrameResult:
    """One frame's scoring output, in the catalog's conventions (``Prediction`` columns)."""

    frame_id: int
    boxes: list[dict]  # [{"xywh_px", "label", "score", "probs"}], score-descending
    scores: dict[str, float]  # every computed image-level score, higher = more uncertain
    uncertainty: float  # scores[config.ranking]
    embedding: np.ndarray | None  # (D,) float32
    error: str | None = None  # set when the frame could not be decoded (nothing else is)


def catalog_boxes(det, classes: Sequence[str], config: ScoringConfig) -> list[dict]:
    """Detections -> catalog box dicts (xywh px, class name, score, per-class probs in class order).

    Score-descending, at most ``config.max_stored_boxes``, none under ``config.store_min_score``.
    """
    order = np.argsort(-det.scores, kind="stable")[: config.max_stored_boxes]
    keep = order[det.scores[order] >= config.store_min_score]
    if keep.size == 0:
        return []
    xyxy = det.boxes_xyxy_px[keep].astype(np.float64)
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    xywh_rows = np.round(xywh, BOX_DECIMALS).tolist()
    scores = np.round(det.scores[keep].astype(np.float64), PROB_DECIMALS).tolist()
    labels = [classes[int(label)] for label in det.labels[keep]]
    with_probs = det.probs is not None and det.probs_kind is not None
    probs = np.round(det.probs[keep, : len(classes)].astype(np.float64), PROB_DECIMALS).tolist() if with_probs else None
    out = []
    for k in range(keep.size):
        box = {"xywh_px": xywh_rows[k], "label": labels[k], "score": scores[k]}
        if with_probs:
            box["probs"] = probs[k]
        out.append(box)
    return out


def results_from_detections(frame_ids: Sequence[int], detections: Sequence, classes: Sequence[str],
                            config: ScoringConfig, flipped: Sequence | None = None) -> list[FrameResult]:
    """Turn one batch of ``Detections`` into ``FrameResult``s (pure; no model, no I/O)."""
    weights = None if config.class_weights is None else np.asarray(config.class_weights, dtype=np.float64)
    scores = compute_scores(detections, n_classes=len(classes), class_weights=weights, flipped=flipped)
    results = []
    for i, (frame_id, det) in enumerate(zip(frame_ids, detections)):
        named = {name: round(float(values[i]), 6) for name, values in scores.items()}
        results.append(FrameResult(int(frame_id), catalog_boxes(det, classes, config), named, named[config.ranking],
                                   det.embedding))
    return results


def predict_batch(detector, images: Sequence[np.ndarray], config: ScoringConfig) -> tuple[list, list | None]:
    """The model half of a batch: detections, plus the flipped pass mapped back when TTA is on."""
    detections = detector.predict(list(images))
    flipped = None
    if config.tta_flip:
        mirrored = detector.predict([np.ascontiguousarray(image[:, ::-1]) for image in images])
        flipped = [det.hflip(image.shape[1]) for det, image in zip(mirrored, images)]
    return detections, flipped


def score_images(detector, frame_ids: Sequence[int], images: Sequence[np.ndarray],
                 config: ScoringConfig) -> list[FrameResult]:
    """The per-batch function both engines run: predict (and flip-TTA), then score."""
    detections, flipped = predict_batch(detector, images, config)
    return results_from_detections(frame_ids, detections, detector.classes, config, flipped)


# ----------------------------------------------------------------------------- local engine
def _die_with_parent(_worker_id: int) -> None:
    """Decode workers end when the scoring process does, even on SIGKILL (Linux prctl
    PR_SET_PDEATHSIG); a worker blocked on a full queue would otherwise wait forever."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _FrameDataset:
    """(frame_id, path) -> (frame_id, image or None, error); decoding runs in DataLoader workers.

    ``prepare`` (the detector's optional ``prepare`` method) converts the decoded ``HxWx3`` uint8
    array into the model's input in the worker too, off the forward pass's critical path.
    """

    def __init__(self, frames: Sequence[tuple[int, str]], prepare=None):
        self.frames = list(frames)
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int):
        from active_learning.train import read_rgb
        from curation.errors import InputError

        frame_id, path = self.frames[index]
        try:
            image = read_rgb(path)
        except (InputError, OSError) as exc:
            return frame_id, None, str(exc)
        return frame_id, (self.prepare(image) if self.prepare is not None else image), None


def _collate(items):
    return items


def _split_decoded(items) -> tuple[list[int], list[np.ndarray], list[FrameResult]]:
    good = [(frame_id, image) for frame_id, image, error in items if image is not None]
    failed = [FrameResult(int(frame_id), [], {}, 0.0, None, error) for frame_id, image, error in items if image is None]
    return [f for f, _ in good], [img for _, img in good], failed


def _score_decoded(detector, items, config: ScoringConfig) -> list[FrameResult]:
    frame_ids, images, failed = _split_decoded(items)
    return (score_images(detector, frame_ids, images, config) if frame_ids else []) + failed


def iter_local(detector, frames: Sequence[tuple[int, str]], config: ScoringConfig) -> Iterator[list[FrameResult]]:
    """Score ``frames`` (frame_id, path) in order, one list of results per batch.

    Three stages overlap: DataLoader worker processes decode batch k+1, the main thread runs the
    forward of batch k, and a helper thread turns batch k-1's detections into results (numpy work
    that fills the gaps the forward's single-threaded Python glue leaves on the other core).
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torch.utils.data import DataLoader

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # Flip-TTA mirrors the decoded arrays, so it keeps numpy inputs; otherwise workers prepare tensors.
    prepare = getattr(detector, "prepare", None) if config.workers > 0 and not config.tta_flip else None
    loader = DataLoader(_FrameDataset(frames, prepare), batch_size=config.batch_size, shuffle=False,
                        num_workers=config.workers, collate_fn=_collate,
                        prefetch_factor=4 if config.workers > 0 else None,
                        persistent_workers=False, worker_init_fn=_die_with_parent)

    def finish(frame_ids, detections, flipped, failed) -> list[FrameResult]:
        results = results_from_detections(frame_ids, detections, detector.classes, config, flipped) if frame_ids else []
        return results + failed

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beltcurate-score") as helper:
        pending = None
        for items in loader:
            frame_ids, images, failed = _split_decoded(items)
            detections, flipped = predict_batch(detector, images, config) if frame_ids else ([], None)
            submitted = helper.submit(finish, frame_ids, detections, flipped, failed)
            if pending is not None:
                yield pending.result()
            pending = submitted
        if pending is not None:
            yield pending.result()


# ----------------------------------------------------------------------------- Ray engine
class RayScorer:
    """Ray Data actor: loads the detector once, scores batches of {"frame_id", "path"} columns."""

    def __init__(self, checkpoint: str, config: dict):
        from active_learning.detectors import load_detector

        self.config = ScoringConfig(**config)
        if self.config.torch_threads:
            import torch

            torch.set_num_threads(self.config.torch_threads)
        self.detector = load_detector(checkpoint)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        dataset = _FrameDataset(list(zip(batch["frame_id"].tolist(), batch["path"].tolist())))
        results = _score_decoded(self.detector, [dataset[i] for i in range(len(dataset))], self.config)
        return results_to_columns(results)


def results_to_columns(results: Sequence[FrameResult]) -> dict[str, np.ndarray]:
    """FrameResults -> numpy columns (JSON strings for the nested parts) that Ray Data can carry."""
    dim = max((r.embedding.shape[0] for r in results if r.embedding is not None), default=0)
    embeddings = np.zeros((len(results), dim), dtype=np.float32)
    has_embedding = np.zeros(len(results), dtype=bool)
    for i, r in enumerate(results):
        if r.embedding is not None:
            embeddings[i] = r.embedding
            has_embedding[i] = True
    return {
        "frame_id": np.array([r.frame_id for r in results], dtype=np.int64),
        "boxes_json": np.array([json.dumps(r.boxes) for r in results], dtype=object),
        "scores_json": np.array([json.dumps(r.scores) for r in results], dtype=object),
        "uncertainty": np.array([r.uncertainty for r in results], dtype=np.float64),
        "embedding": embeddings,
        "has_embedding": has_embedding,
        "error": np.array([r.error or "" for r in results], dtype=object),
    }


def columns_to_results(columns: dict[str, np.ndarray]) -> list[FrameResult]:
    out = []
    for i, frame_id in enumerate(columns["frame_id"].tolist()):
        embedding = np.asarray(columns["embedding"][i], dtype=np.float32) if columns["has_embedding"][i] else None
        out.append(FrameResult(int(frame_id), json.loads(columns["boxes_json"][i]), json.loads(columns["scores_json"][i]),
                               float(columns["uncertainty"][i]), embedding, columns["error"][i] or None))
    return out


def iter_ray(checkpoint: str | os.PathLike, frames: Sequence[tuple[int, str]], config: ScoringConfig, *,
             actors: int = 2, address: str | None = None) -> Iterator[list[FrameResult]]:
    """Score ``frames`` with Ray Data: ``map_batches`` over an actor pool of ``actors`` RayScorers.

    Connects to ``address`` (a running cluster, e.g. ``ray://head:10001`` or ``auto``) or starts a
    local one. Output order follows Ray's scheduling; every result carries its frame id.
    """
    try:
        import ray
    except ImportError:
        from curation.errors import ConfigError

        raise ConfigError("--engine ray needs Ray Data: pip install 'beltcurate[ray]'") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=max(actors, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    items = [{"frame_id": int(frame_id), "path": str(path)} for frame_id, path in frames]
    if not items:
        return
    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // config.batch_size, 64)))
    scored = dataset.map_batches(
        RayScorer, fn_constructor_kwargs={"checkpoint": str(checkpoint), "config": asdict(config)},
        batch_size=config.batch_size, batch_format="numpy", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
    )
    for columns in scored.iter_batches(batch_size=config.batch_size, batch_format="numpy"):
        yield columns_to_results(columns)
