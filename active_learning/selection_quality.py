"""Cheap selection-quality measures: how good is a selection, without retraining anything?

With a detector trained on a seed split and the hidden ground truth of the pool, each selected
frame is worth:

  - **detector errors found**: missed ground-truth boxes + false boxes, greedy one-to-one matching
    of same-class boxes at IoU >= 0.5 (predictions at or above ``score_thresh``) -- the mistakes
    a label of this frame would correct;
  - **rare-class objects covered**: ground-truth objects of the rare classes in the frame;
  - **near-duplicates**: the share of selected frames that have a near-identical frame elsewhere
    in the same selection (a wasted label). Measured on pixels (a 64-bit difference hash, Hamming
    distance <= ``NEAR_DUP_MAX_HAMMING``), independent of the detector embeddings the strategies
    see, so a strategy cannot score well here just by agreeing with itself.

Every measure is reported per selected frame and as a ratio to ``random`` (mean over seeds).
Pure functions over arrays; ``run_selection_quality`` is the loop that trains and scores.
"""

from __future__ import annotations

import os
import json
import time
from types import SimpleNamespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# Predictions below this score are not counted as boxes the detector "claims" (same floor as the
# review's false-positive view, review.fp_min_confidence).
DEFAULT_SCORE_THRESH = 0.3
MATCH_IOU = 0.5
# dHash: 64 bits from a 9x8 grey thumbnail. <= 10 differing bits is the usual near-duplicate
# cut-off for difference hashes (resized/re-encoded copies and burst shots land well under it).
NEAR_DUP_MAX_HAMMING = 10


# ----------------------------------------------------------------------------- per frame (pure)
def frame_errors(pred_boxes_xyxy: np.ndarray, pred_labels: np.ndarray, pred_scores: np.ndarray,
                 gt_boxes_xyxy: np.ndarray, gt_labels: np.ndarray, *, score_thresh: float = DEFAULT_SCORE_THRESH,
                 iou_thresh: float = MATCH_IOU) -> tuple[int, int]:
    """``(missed, false)`` for one frame: unmatched ground-truth boxes and unmatched predictions.

    Predictions scoring ``>= score_thresh`` are matched in descending score order to the unmatched
    ground-truth box of the same class with the highest IoU, if that IoU is ``>= iou_thresh``.
    """
    from active_learning.uncertainty import box_iou_xyxy

    keep = np.asarray(pred_scores) >= score_thresh
    boxes = np.asarray(pred_boxes_xyxy, np.float64).reshape(-1, 4)[keep]
    labels = np.asarray(pred_labels).reshape(-1)[keep]
    scores = np.asarray(pred_scores).reshape(-1)[keep]
    gt_boxes = np.asarray(gt_boxes_xyxy, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return int(len(gt_boxes)), int(len(boxes))
    iou = box_iou_xyxy(boxes, gt_boxes)
    iou = np.where(labels[:, None] == gt_labels[None, :], iou, -1.0)
    matched_gt = np.zeros(len(gt_boxes), bool)
    false = 0
    for p in np.argsort(-scores, kind="stable"):
        candidates = np.where(matched_gt, -1.0, iou[p])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_thresh:
            matched_gt[best] = True
        else:
            false += 1
    return int((~matched_gt).sum()), int(false)


def dhash64(image_rgb: np.ndarray) -> int:
    """64-bit difference hash of an ``HxWx3`` uint8 image (9x8 grey thumbnail, left > right bits)."""
    from PIL import Image

    grey = np.asarray(Image.fromarray(np.asarray(image_rgb, np.uint8)).convert("L").resize((9, 8), Image.BILINEAR),
                      dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).reshape(-1)
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """``(n, n)`` Hamming distances between 64-bit hashes ``(n,)`` (uint64)."""
    h = np.asarray(hashes, dtype=np.uint64)
    x = h[:, None] ^ h[None, :]
    as_bytes = x.view(np.uint8).reshape(len(h), len(h), 8)
    return np.unpackbits(as_bytes, axis=2).sum(axis=2)


def near_duplicate_share(hashes: np.ndarray, rows: np.ndarray, *, max_hamming: int = NEAR_DUP_MAX_HAMMING) -> float:
    """Share of ``rows`` with another row of ``rows`` within ``max_hamming`` bits (0 when < 2 rows)."""
    rows = np.asarray(rows, np.int64)
    if len(rows) < 2:
        return 0.0
    dist = hamming_matrix(np.asarray(hashes, np.uint64)[rows])
    np.fill_diagonal(dist, 65)
    return float((dist.min(axis=1) <= max_hamming).mean())


def pool_near_duplicate_share(hashes: np.ndarray, *, max_hamming: int = NEAR_DUP_MAX_HAMMING) -> float:
    """The same share over the whole pool (what random selection samples from)."""
    return near_duplicate_share(hashes, np.arange(len(hashes)), max_hamming=max_hamming)


@dataclass
class FrameTruth:
    """Per pool row: ``errors`` = missed + false (int), ``missed``, ``false``, ``rare_objects``."""

    missed: np.ndarray
    false: np.ndarray
    rare_objects: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        return self.missed + self.false


def frame_truth(predictions: Sequence, gt: Sequence[tuple[np.ndarray, np.ndarray]], rare_class_ids: Sequence[int], *,
                score_thresh: float = DEFAULT_SCORE_THRESH) -> FrameTruth:
    """Errors and rare objects of every pool row from its Detections and (boxes, labels) ground truth."""
    n = len(predictions)
    missed, false, rare = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    rare_ids = np.asarray(list(rare_class_ids), np.int64)
    for row, (det, (gt_boxes, gt_labels)) in enumerate(zip(predictions, gt, strict=True)):
        missed[row], false[row] = frame_errors(det.boxes_xyxy_px, det.labels, det.scores, gt_boxes, gt_labels,
                                               score_thresh=score_thresh)
        rare[row] = int(np.isin(gt_labels, rare_ids).sum())
    return FrameTruth(missed, false, rare)


def measure_selection(rows: np.ndarray, truth: FrameTruth, hashes: np.ndarray, *,
                      max_hamming: int = NEAR_DUP_MAX_HAMMING) -> dict[str, float]:
    """Per-frame yields of one selection: errors, missed, false, rare objects per frame, near-duplicate share."""
    rows = np.asarray(rows, np.int64)
    k = max(len(rows), 1)
    return {
        "frames": int(len(rows)),
        "errors_per_frame": float(truth.errors[rows].sum() / k),
        "missed_per_frame": float(truth.missed[rows].sum() / k),
        "false_per_frame": float(truth.false[rows].sum() / k),
        "rare_objects_per_frame": float(truth.rare_objects[rows].sum() / k),
        "rare_frames_share": float((truth.rare_objects[rows] > 0).sum() / k),
        "near_duplicate_share": near_duplicate_share(hashes, rows, max_hamming=max_hamming),
    }


MEASURES = ("errors_per_frame", "missed_per_frame", "false_per_frame", "rare_objects_per_frame",
            "rare_frames_share", "near_duplicate_share")


def compare_to_random(per_seed: dict[str, list[dict]], reference: str = "random") -> dict[str, dict]:
    """Per strategy and measure: mean and std over seeds, and the ratio of means to ``reference``."""
    out: dict[str, dict] = {}
    ref = per_seed.get(reference)
    for strategy, runs in per_seed.items():
        entry: dict[str, Any] = {"seeds": len(runs)}
        for m in MEASURES:
            values = np.array([r[m] for r in runs], float)
            entry[m] = {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}
            if ref:
                ref_mean = float(np.mean([r[m] for r in ref]))
                entry[m]["ratio_vs_random"] = round(float(values.mean()) / ref_mean, 3) if ref_mean > 0 else None
        out[strategy] = entry
    return out


# ----------------------------------------------------------------------------- the loop (effects)
def run_selection_quality(data, strategies: Sequence[str], *, seeds: Sequence[int], seed_frames: int, budget: int,
                          train_iters: int, arch: str = "fcos_mnv3s", input_size: Sequence[int] = (256, 192),
                          batch_size: int = 8, uncertainty: str = "entropy_sum", pca_dim: int = 128,
                          rare_classes: Sequence[str] | None = None, score_thresh: float = DEFAULT_SCORE_THRESH,
                          work_dir: str | os.PathLike, step_lock=None, strategy_params: dict | None = None,
                          log: Callable[[str], None] = lambda m: None,
                          on_update: Callable[[dict], None] | None = None) -> dict:
    """Per seed: a random seed split of ``seed_frames`` pool frames is labeled, a detector is trained
    on it (``train_iters`` from scratch), the rest of the pool is scored, and every strategy selects
    ``budget`` frames; the selections are measured against the hidden ground truth.

    ``data``: a ``simulate.SimData`` (its test split is not used here). Returns per-seed measures
    and ``compare_to_random``; ``on_update`` gets the result so far after every seed.
    """
    import contextlib

    from active_learning.simulate import SimConfig, score_pool, select_rows, write_coco_subset
    from active_learning.train import read_rgb, train_detector

    step_lock = step_lock or contextlib.nullcontext
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    n_pool = len(data.pool_ids)
    if seed_frames + budget > n_pool:
        from curation.errors import InputError

        raise InputError(f"--seed-frames {seed_frames} + --budget {budget} exceed the pool of {n_pool} frames")
    by_id = data.images_by_id
    gt_by_id = data.gt_by_id()
    gt = [gt_by_id[int(i)] for i in data.pool_ids]
    if rare_classes is None:
        counts = np.bincount(np.concatenate([labels for _, labels in gt] + [np.zeros(0, np.int64)]),
                             minlength=len(data.classes))
        rare_classes = [data.classes[int(np.argmin(counts))]]
    rare_ids = [data.classes.index(c) for c in rare_classes]
    started = time.perf_counter()
    hashes = np.array([dhash64(read_rgb(data.image_root / by_id[int(i)]["file_name"])) for i in data.pool_ids],
                      dtype=np.uint64)
    hash_s = time.perf_counter() - started
    meta = data.pool_meta()
    config = SimConfig(strategies=list(strategies), uncertainty=uncertainty, pca_dim=pca_dim, arch=arch,
                       input_size=tuple(input_size))
    per_seed: dict[str, list[dict]] = {s: [] for s in strategies}
    seed_runs = []
    for seed in seeds:
        rng = np.random.default_rng([seed, 2])
        labeled = np.zeros(n_pool, bool)
        labeled[rng.choice(n_pool, size=seed_frames, replace=False)] = True
        train_json = write_coco_subset(data, data.pool_ids[labeled], work / f"seed{seed}" / "seed_split.json")
        ckpt = work / f"seed{seed}" / "detector.pt"
        summary_path = ckpt.with_suffix(".train.json")
        if ckpt.is_file() and summary_path.is_file():
            # the same seed split and settings were trained to completion before (an interrupted
            # run): reuse that detector; delete the work folder to retrain
            log(f"seed {seed}: reusing {ckpt}")
            summary = SimpleNamespace(**{k: v for k, v in json.loads(summary_path.read_text()).items() if k == "seconds"})
        else:
            log(f"seed {seed}: training on {seed_frames} frames ({train_iters} iterations)")
            with step_lock():
                summary = train_detector(train_json, data.image_root, ckpt, arch=arch, max_iters=train_iters, seed=seed,
                                         batch_size=batch_size, input_size=input_size, classes=data.classes)
            summary_path.write_text(json.dumps({"seconds": summary.seconds}))
        with step_lock():
            scores = score_pool(ckpt, data, config)
        truth = frame_truth(scores.predictions, gt, rare_ids, score_thresh=score_thresh)
        unlabeled = ~labeled
        run = {"seed": seed, "train_s": summary.seconds, "score_s": round(scores.seconds, 1),
               "pool_unlabeled": int(unlabeled.sum()),
               "pool_errors_per_frame": round(float(truth.errors[unlabeled].mean()), 4),
               "pool_rare_objects_per_frame": round(float(truth.rare_objects[unlabeled].mean()), 4),
               "pool_near_duplicate_share": round(near_duplicate_share(hashes, np.flatnonzero(unlabeled)), 4),
               "strategies": {}}
        for strategy in strategies:
            t0 = time.perf_counter()
            rows = select_rows(strategy, None if strategy == "random" else scores, labeled, budget, seed=seed,
                               meta=meta, classes=data.classes, uncertainty_name=uncertainty,
                               params=(strategy_params or {}).get(strategy))
            measured = measure_selection(rows, truth, hashes)
            measured["select_s"] = round(time.perf_counter() - t0, 3)
            per_seed[strategy].append(measured)
            run["strategies"][strategy] = measured
            log(f"seed {seed} {strategy:<12} errors/frame {measured['errors_per_frame']:.2f}  rare/frame "
                f"{measured['rare_objects_per_frame']:.3f}  near-dup share {measured['near_duplicate_share']:.3f}")
        seed_runs.append(run)
        if on_update:
            on_update(_quality_result(data, n_pool, rare_classes, strategies, seeds, seed_frames, budget, train_iters, arch,
                                      input_size, uncertainty, score_thresh, hash_s, seed_runs, per_seed))
    return _quality_result(data, n_pool, rare_classes, strategies, seeds, seed_frames, budget, train_iters, arch,
                           input_size, uncertainty, score_thresh, hash_s, seed_runs, per_seed)


def _quality_result(data, n_pool, rare_classes, strategies, seeds, seed_frames, budget, train_iters, arch, input_size,
                    uncertainty, score_thresh, hash_s, seed_runs, per_seed) -> dict:
    return {
        "data": {"source": data.source, "pool_frames": n_pool, "classes": data.classes, "rare_classes": list(rare_classes)},
        "config": {"strategies": list(strategies), "seeds": list(seeds), "seed_frames": seed_frames, "budget": budget,
                   "train_iters": train_iters, "arch": arch, "input_size": list(input_size), "uncertainty": uncertainty,
                   "score_thresh": score_thresh, "match_iou": MATCH_IOU, "near_dup_max_hamming": NEAR_DUP_MAX_HAMMING},
        "hash_s": round(hash_s, 1),
        "seeds_done": [run["seed"] for run in seed_runs],
        "complete": len(seed_runs) == len(list(seeds)),
        "seeds": seed_runs,
        "comparison": compare_to_random({k: v for k, v in per_seed.items() if v}),
    }


def quality_markdown(result: dict) -> str:
    """A Markdown table: each measure per strategy, mean ± std over seeds and ratio to random."""
    comparison = result["comparison"]
    lines = ["| strategy | errors/frame (x random) | missed/frame | false/frame | rare objects/frame (x random) "
             "| near-dup share (x random) |", "|---|---|---|---|---|---|"]

    def cell(entry, m, ratio=True):
        e = entry[m]
        text = f"{e['mean']:.3f} ± {e['std']:.3f}"
        if ratio and e.get("ratio_vs_random") is not None:
            text += f" ({e['ratio_vs_random']:.2f}x)"
        return text

    for strategy, entry in comparison.items():
        lines.append(f"| {strategy} | {cell(entry, 'errors_per_frame')} | {cell(entry, 'missed_per_frame', False)} | "
                     f"{cell(entry, 'false_per_frame', False)} | {cell(entry, 'rare_objects_per_frame')} | "
                     f"{cell(entry, 'near_duplicate_share')} |")
    return "\n".join(lines)
