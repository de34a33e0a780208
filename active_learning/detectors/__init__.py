"""The detector protocol, its numpy output type, and the adapter registry.

A detector is whatever the user trained. beltcurate talks to it through ``Detector``: a batch of
``HxWx3`` uint8 RGB images in, one ``Detections`` per image out. ``Detections`` is plain numpy:
torch tensors never leave an adapter.

Checkpoint files (``torch.save`` of a dict) carry the weights plus the metadata an adapter needs::

    {"state_dict": ..., "arch": "fcos_mnv3s", "classes": ["cardboard", ...],
     "input_size": [256, 192],          # [width, height] the model resizes frames to
     "model_version": "fcos_mnv3s-synth1500-s1",
     "adapter": "torchvision",          # optional; default torchvision
     "arch_params": {...}, "train": {...}, "eval": {...}}   # optional

``load_detector(path)`` picks the adapter named in the file from ``DETECTORS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from curation.errors import InputError
from curation.registry import Registry

# probs_kind values:
#   "softmax": (n, C+1) rows sum to 1; column C (the LAST) is background (Faster R-CNN, SSD).
#   "sigmoid": (n, C) independent per-class scores in [0, 1] (RetinaNet, FCOS: for FCOS the
#              centerness-weighted sqrt(sigmoid(cls) * sigmoid(ctr)), the same quantity as the score).
#   None:      only the top score is known (imported predictions without per-class scores).
PROBS_KINDS = ("softmax", "sigmoid", None)


@dataclass
class Detections:
    """One image's detections, in the pixel space of the image given to ``predict``.

    boxes_xyxy_px: ``(n, 4)`` float32, absolute pixels, top-left origin.
    labels: ``(n,)`` int64, 0-based indices into the detector's ``classes``.
    scores: ``(n,)`` float32 in [0, 1], higher = more confident.
    probs: per-box class probabilities, see ``probs_kind``; None when the model has none.
    embedding: ``(D,)`` float32 image embedding from the same forward pass, or None.
    """

    boxes_xyxy_px: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    probs: np.ndarray | None = None
    embedding: np.ndarray | None = None
    probs_kind: str | None = "softmax"

    def __post_init__(self) -> None:
        self.boxes_xyxy_px = np.asarray(self.boxes_xyxy_px, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = self.boxes_xyxy_px.shape[0]
        if self.labels.shape[0] != n or self.scores.shape[0] != n:
            raise ValueError(f"Detections: {n} boxes but {self.labels.shape[0]} labels and {self.scores.shape[0]} scores")
        if self.probs is not None:
            probs = np.asarray(self.probs, dtype=np.float32)
            self.probs = probs.reshape(n, probs.shape[-1] if probs.ndim == 2 else (-1 if n else 0))
        if self.probs_kind not in PROBS_KINDS:
            raise ValueError(f"Detections.probs_kind must be one of {PROBS_KINDS}, got {self.probs_kind!r}")
        if self.embedding is not None:
            self.embedding = np.asarray(self.embedding, dtype=np.float32).reshape(-1)

    def __len__(self) -> int:
        return int(self.boxes_xyxy_px.shape[0])

    @classmethod
    def empty(cls, n_prob_columns: int = 0, probs_kind: str | None = "softmax", embedding=None) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0),
                   np.zeros((0, n_prob_columns)) if probs_kind else None, embedding, probs_kind)

    def hflip(self, width: int) -> "Detections":
        """The same detections mirrored horizontally in an image ``width`` px wide."""
        boxes = self.boxes_xyxy_px.copy()
        boxes[:, [0, 2]] = width - self.boxes_xyxy_px[:, [2, 0]]
        return Detections(boxes, self.labels, self.scores, self.probs, self.embedding, self.probs_kind)


@runtime_checkable
class Detector(Protocol):
    """What the scoring engine needs from a detector.

    Optional: ``prepare(image) -> object`` converting one ``HxWx3`` uint8 array into whatever
    ``predict`` also accepts; the engine then calls it in its decode workers, off the forward path.
    """

    model_version: str
    classes: list[str]
    arch: str

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """``images``: list of ``HxWx3`` uint8 RGB arrays (any sizes). One Detections per image."""
        ...


# name -> loader(checkpoint dict, path, **options) -> Detector
DETECTORS: Registry[Callable[..., Detector]] = Registry("detector adapter")


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict on the CPU and check the keys every adapter relies on."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"detector checkpoint {str(path)!r} does not exist; train one with 'beltcurate train' "
            "or set model.checkpoint"
        )
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for a bad file
        raise InputError(f"detector checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict):
        raise InputError(
            f"detector checkpoint {str(path)!r} is a {type(checkpoint).__name__}, not a dict; save "
            "{'state_dict', 'arch', 'classes', 'input_size', 'model_version'} with torch.save"
        )
    missing = [key for key in ("state_dict", "arch", "classes", "model_version") if key not in checkpoint]
    if missing:
        raise InputError(
            f"detector checkpoint {str(path)!r} lacks {', '.join(missing)}; see docs/scoring.md for the layout"
        )
    return checkpoint


def load_detector(path: str | os.PathLike, **options) -> Detector:
    """The detector stored in checkpoint ``path`` (adapter chosen by its ``adapter`` key).

    ``options`` go to the adapter (torchvision: ``score_thresh``, ``num_threads``).
    """
    checkpoint = read_checkpoint(path)
    _ensure_adapters_registered()
    loader = DETECTORS.get(checkpoint.get("adapter", "torchvision"))
    return loader(checkpoint, str(path), **options)


def _ensure_adapters_registered() -> None:
    # Adapter modules register themselves on import; torch is imported only when one is used.
    from active_learning.detectors import torchvision_adapter  # noqa: F401
