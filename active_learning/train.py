"""Reference trainer and COCO evaluation for the torchvision adapters.

Production training stays in the user's own pipeline; this exists so the demo and the
active-learning simulation have a detector that trains from scratch on 2 CPU cores in minutes:

    train_detector("frames/annotations.json", "frames/images", "models/demo.pt",
                   arch="fcos_mnv3s", epochs=12, seed=1)
    evaluate("models/demo.pt", "test/annotations.json", "test/images")["map50"]

Determinism: one seed fixes initialisation, shuffling and flips; the step count comes from
``epochs``/``max_iters`` (a ``time_budget_s`` cut-off makes a run depend on machine speed).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from curation.errors import InputError

# AdamW at 2e-3 with a short linear warm-up and cosine decay trained the MobileNetV3-small FCOS
# stably from scratch at batch 8; a higher rate diverged in the first epoch, a lower one was slower.
DEFAULT_LR = 2e-3
WEIGHT_DECAY = 1e-4
WARMUP_ITERS = 100
GRAD_CLIP_NORM = 10.0
FROM_SCRATCH_BN_MOMENTUM = 0.1


@dataclass
class CocoSet:
    """A COCO ground-truth file resolved against an image folder, with labels in class-map order."""

    coco_json: Path
    image_root: Path
    classes: list[str]
    images: list[dict]  # COCO image entries
    boxes_xyxy_px: dict[int, np.ndarray]  # image_id -> (n, 4)
    labels: dict[int, np.ndarray]  # image_id -> (n,) 0-based class indices
    category_id_of: dict[str, int]  # class name -> the file's category id

    def class_counts(self) -> dict[str, int]:
        counts = {name: 0 for name in self.classes}
        for labels in self.labels.values():
            for label in labels:
                counts[self.classes[int(label)]] += 1
        return counts


def load_coco(coco_json: str | os.PathLike, image_root: str | os.PathLike, classes: Sequence[str] | None = None) -> CocoSet:
    """Read a COCO detection file; ``classes`` (default: categories by id) fixes the label order."""
    coco_json, image_root = Path(coco_json), Path(image_root)
    if not coco_json.is_file():
        raise InputError(f"COCO file {str(coco_json)!r} does not exist; point --data at a folder with annotations.json")
    if not image_root.is_dir():
        raise InputError(f"image folder {str(image_root)!r} does not exist; COCO file_name paths are relative to it")
    try:
        data = json.loads(coco_json.read_text())
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        annotations = data.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{str(coco_json)!r} is not a COCO detection file ({exc}); it needs images and categories") from exc
    names_by_id = {c["id"]: c["name"] for c in categories}
    classes = list(classes) if classes is not None else [c["name"] for c in categories]
    unknown = sorted(set(names_by_id.values()) - set(classes))
    if unknown:
        raise InputError(f"{str(coco_json)!r} has categories {unknown} that the class map {classes} lacks; "
                         "use the detector's classes or fix the file")
    index_of = {name: i for i, name in enumerate(classes)}
    boxes: dict[int, list] = {img["id"]: [] for img in images}
    labels: dict[int, list] = {img["id"]: [] for img in images}
    for ann in annotations:
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = ann["bbox"]
        if w <= 1 or h <= 1:
            continue
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(index_of[names_by_id[ann["category_id"]]])
    return CocoSet(
        coco_json, image_root, classes, images,
        {k: np.asarray(v, dtype=np.float32).reshape(-1, 4) for k, v in boxes.items()},
        {k: np.asarray(v, dtype=np.int64) for k, v in labels.items()},
        {name: cid for cid, name in names_by_id.items()},
    )


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``HxWx3`` uint8 RGB with EXIF orientation applied (catalog pixel space)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {str(path)!r} cannot be decoded ({exc}); re-ingest to quarantine it") from exc


@dataclass
class TrainSummary:
    out: str
    arch: str
    model_version: str
    n_images: int
    epochs: float
    iterations: int
    seconds: float
    images_per_s: float
    final_loss: float
    seed: int
    warm_start: str | None
    losses: list[float] = field(default_factory=list)  # mean loss per logged window
    eval: dict | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("losses")
        return data


def _lr_factor(iteration: int, progress: float) -> float:
    warm = min(1.0, (iteration + 1) / WARMUP_ITERS)
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_detector(
    coco_json: str | os.PathLike,
    image_root: str | os.PathLike,
    out_checkpoint: str | os.PathLike,
    *,
    arch: str = "fcos_mnv3s",
    epochs: float | None = None,
    max_iters: int | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    init_checkpoint: str | os.PathLike | None = None,
    batch_size: int = 8,
    lr: float = DEFAULT_LR,
    input_size: Sequence[int] = (256, 192),
    classes: Sequence[str] | None = None,
    model_version: str | None = None,
    arch_params: dict | None = None,
    val_coco_json: str | os.PathLike | None = None,
    val_image_root: str | os.PathLike | None = None,
    num_threads: int | None = None,
    advance: Callable[[int], None] = lambda n=1: None,
    log: Callable[[str], None] | None = None,
) -> TrainSummary:
    """Train ``arch`` on a COCO set and write a checkpoint ``load_detector`` reads.

    Stops after ``epochs`` passes or ``max_iters`` steps (the cosine schedule spans that), or at
    ``time_budget_s`` seconds (alone: the schedule spans the time budget). ``init_checkpoint``
    warm-starts from a checkpoint of the same arch and classes (fine-tuning rounds of the
    simulation). With ``val_*`` the checkpoint also carries an ``eval`` block (mAP, per-class AP).
    """
    import torch

    from active_learning.detectors import read_checkpoint
    from active_learning.detectors.torchvision_adapter import (
        ARCHS, build_model, checkpoint_dict, images_to_tensors, model_from_checkpoint, set_batchnorm_momentum,
    )

    if epochs is None and max_iters is None and time_budget_s is None:
        raise InputError("train_detector needs epochs, max_iters or time_budget_s (how long to train)")
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    init = None
    if init_checkpoint is not None:
        init = read_checkpoint(init_checkpoint)
        arch, input_size = init["arch"], init.get("input_size", input_size)
        arch_params = init.get("arch_params", arch_params)
        if classes is None:
            classes = init["classes"]
    dataset = load_coco(coco_json, image_root, classes)
    if init is not None and list(init["classes"]) != dataset.classes:
        raise InputError(f"warm start {str(init_checkpoint)!r} has classes {init['classes']}, the data has "
                         f"{dataset.classes}; train from scratch or pass the same class map")
    family = ARCHS.get(arch).family
    label_offset = 1 if family in ("fasterrcnn", "ssd") else 0
    if init is not None:
        model = model_from_checkpoint(init, str(init_checkpoint))
    else:
        model = build_model(arch, dataset.classes, input_size, arch_params)
        set_batchnorm_momentum(model, FROM_SCRATCH_BN_MOMENTUM)
    model.train()
    n_images = len(dataset.images)
    if n_images == 0:
        raise InputError(f"{str(coco_json)!r} lists no images; nothing to train on")
    iters_per_epoch = max(1, math.ceil(n_images / batch_size))
    planned = max_iters if max_iters is not None else (
        int(round(epochs * iters_per_epoch)) if epochs is not None else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=WEIGHT_DECAY)
    started = time.perf_counter()
    iteration, seen, window, losses = 0, 0, [], []
    last_loss = float("nan")
    done = False
    while not done:
        order = rng.permutation(n_images)
        for start in range(0, n_images, batch_size):
            elapsed = time.perf_counter() - started
            if (planned is not None and iteration >= planned) or (time_budget_s is not None and elapsed >= time_budget_s):
                done = True
                break
            progress = iteration / planned if planned is not None else elapsed / time_budget_s
            for group in optimizer.param_groups:
                group["lr"] = lr * _lr_factor(iteration, progress)
            batch = [dataset.images[i] for i in order[start: start + batch_size]]
            images, targets = [], []
            for entry in batch:
                image = read_rgb(dataset.image_root / entry["file_name"])
                boxes = dataset.boxes_xyxy_px[entry["id"]].copy()
                if rng.random() < 0.5:  # horizontal flip: belts run both ways
                    image = image[:, ::-1]
                    boxes[:, [0, 2]] = image.shape[1] - boxes[:, [2, 0]]
                images.append(image)
                targets.append({"boxes": torch.from_numpy(boxes),
                                "labels": torch.from_numpy(dataset.labels[entry["id"]] + label_offset)})
            loss_dict = model(images_to_tensors(images), targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise InputError(f"training diverged at iteration {iteration} (loss {float(loss)}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            last_loss = float(loss.detach())
            window.append(last_loss)
            iteration += 1
            seen += len(batch)
            advance(len(batch))
            if iteration % 50 == 0:
                losses.append(float(np.mean(window)))
                window = []
                if log:
                    log(f"iter {iteration} loss {losses[-1]:.3f} lr {optimizer.param_groups[0]['lr']:.2e} "
                        f"{seen / (time.perf_counter() - started):.1f} img/s")
    seconds = time.perf_counter() - started
    model.eval()
    model_version = model_version or f"{arch}-{Path(out_checkpoint).stem}-s{seed}"
    train_meta = {"data": str(coco_json), "n_images": n_images, "epochs": round(seen / n_images, 3),
                  "iterations": iteration, "seconds": round(seconds, 1), "seed": seed, "batch_size": batch_size,
                  "lr": lr, "warm_start": str(init_checkpoint) if init_checkpoint else None,
                  "class_counts": dataset.class_counts(), "torch": torch.__version__}
    checkpoint = checkpoint_dict(model, arch=arch, classes=dataset.classes, input_size=input_size,
                                 model_version=model_version, arch_params=arch_params, train=train_meta)
    eval_result = None
    if val_coco_json is not None:
        from active_learning.detectors.torchvision_adapter import TorchvisionDetector

        detector = TorchvisionDetector(model, arch=arch, classes=dataset.classes, input_size=input_size,
                                       model_version=model_version, checkpoint=checkpoint)
        eval_result = evaluate(detector, val_coco_json, val_image_root or Path(val_coco_json).parent / "images")
        checkpoint["eval"] = {k: v for k, v in eval_result.items() if k != "seconds"} | {"data": str(val_coco_json)}
    out_checkpoint = Path(out_checkpoint)
    out_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_checkpoint.with_suffix(out_checkpoint.suffix + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(out_checkpoint)
    return TrainSummary(str(out_checkpoint), arch, model_version, n_images, round(seen / n_images, 3), iteration,
                        round(seconds, 1), round(seen / seconds, 2) if seconds else 0.0, round(last_loss, 4), seed,
                        str(init_checkpoint) if init_checkpoint else None, losses, eval_result)


def evaluate(checkpoint_or_detector, coco_json: str | os.PathLike, image_root: str | os.PathLike, *,
             batch_size: int = 8, limit: int | None = None) -> dict[str, Any]:
    """COCO box evaluation (pycocotools ``COCOeval``) of a detector on a ground-truth file.

    Returns ``map`` (AP@[.5:.95]), ``map50``, ``per_class_ap50`` and ``per_class_ap`` (class name ->
    AP, -1 when the class has no ground truth), ``n_images``, ``images_per_s``, ``seconds``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from active_learning.detectors import load_detector

    detector = (load_detector(checkpoint_or_detector) if isinstance(checkpoint_or_detector, (str, os.PathLike))
                else checkpoint_or_detector)
    dataset = load_coco(coco_json, image_root)
    missing = sorted(set(dataset.classes) - set(detector.classes))
    if missing:
        raise InputError(f"ground truth {str(coco_json)!r} has classes {missing} the detector "
                         f"{detector.model_version!r} does not know ({detector.classes})")
    images = dataset.images[:limit] if limit else dataset.images
    results = []
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        batch = images[start: start + batch_size]
        detections = detector.predict([read_rgb(dataset.image_root / entry["file_name"]) for entry in batch])
        for entry, det in zip(batch, detections):
            for box, label, score in zip(det.boxes_xyxy_px, det.labels, det.scores):
                name = detector.classes[int(label)]
                if name not in dataset.category_id_of:
                    continue
                x0, y0, x1, y1 = (float(v) for v in box)
                results.append({"image_id": entry["id"], "category_id": dataset.category_id_of[name],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    seconds = time.perf_counter() - started
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(Path(coco_json).read_text())
        gt.createIndex()
        image_ids = [entry["id"] for entry in images]
        per_class_ap50, per_class_ap = {}, {}
        if results:
            dt = gt.loadRes(results)
            coco_eval = COCOeval(gt, dt, "bbox")
            coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            stats = coco_eval.stats
            precision = coco_eval.eval["precision"]  # (T IoU, R recall, K classes, A areas, M maxDets)
            for k, cat_id in enumerate(coco_eval.params.catIds):
                name = gt.cats[cat_id]["name"]
                p_all, p50 = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1]
                per_class_ap[name] = round(float(p_all[p_all > -1].mean()), 4) if (p_all > -1).any() else -1.0
                per_class_ap50[name] = round(float(p50[p50 > -1].mean()), 4) if (p50 > -1).any() else -1.0
            map_all, map50 = float(stats[0]), float(stats[1])
        else:
            map_all, map50 = 0.0, 0.0
            per_class_ap = per_class_ap50 = {name: 0.0 for name in dataset.classes}
    return {"map": round(map_all, 4), "map50": round(map50, 4), "per_class_ap50": per_class_ap50,
            "per_class_ap": per_class_ap, "n_images": len(images),
            "images_per_s": round(len(images) / seconds, 2) if seconds else 0.0, "seconds": round(seconds, 1),
            "model_version": detector.model_version}
