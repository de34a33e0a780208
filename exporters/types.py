"""The canonical label types every format converts to and from.

One box type, :class:`Box`: absolute pixels of the oriented frame (after EXIF rotation), top-left
``xywh`` (the COCO convention and the catalog's ``Annotation.boxes``), class *name* (never an id:
ids belong to a class map and differ between formats — COCO 1-based, YOLO 0-based).

One image type, :class:`LabeledImage`: an image's size, its boxes and where it came from.

Pure and dependency-free: no format library, database or file system is touched here except by
:func:`load_class_map`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from curation.errors import InputError

# Boxes may poke out of the image by rounding (YOLO floats, Label Studio's 100 % edge, an
# annotator's drag past the edge by a fraction of a pixel). Up to this many pixels they are
# clipped to the image and counted; beyond it they are a problem (dropped or fatal, see on_bad).
# Raising it silently accepts sloppier labels.
CLIP_TOLERANCE_PX = 0.5

# Problem kinds, reported by readers and by check_image; every one names the input it is about.
MISSING_IMAGE = "missing_image"
BOX_OUTSIDE = "box_outside"
DEGENERATE_BOX = "degenerate_box"
UNKNOWN_CLASS = "unknown_class"
EMPTY_FRAME = "empty_frame"
MALFORMED = "malformed"
UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Box:
    """One object: ``xywh_px`` = (x, y, width, height) in pixels, top-left origin; class name."""

    xywh_px: tuple[float, float, float, float]
    label: str
    score: float | None = None  # detector confidence for predictions; None for ground truth

    @property
    def xyxy_px(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.xywh_px
        return (x, y, x + w, y + h)

    @classmethod
    def from_xyxy_px(cls, xyxy_px: Sequence[float], label: str, score: float | None = None) -> "Box":
        x1, y1, x2, y2 = (float(v) for v in xyxy_px)
        return cls((x1, y1, x2 - x1, y2 - y1), label, score)

    def to_catalog(self) -> dict[str, Any]:
        """The catalog's JSON form: ``{"xywh_px": [x, y, w, h], "label": name}`` (+ ``score``)."""
        out: dict[str, Any] = {"xywh_px": [float(v) for v in self.xywh_px], "label": self.label}
        if self.score is not None:
            out["score"] = float(self.score)
        return out

    @classmethod
    def from_catalog(cls, data: dict[str, Any]) -> "Box":
        try:
            x, y, w, h = data["xywh_px"]  # unpacked directly: this runs once per box per export
            x, y, w, h = float(x), float(y), float(w), float(h)
            label = str(data["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"catalog box {data!r} is malformed ({exc}); expected {{'xywh_px': [x, y, w, h], 'label': name}}") from None
        score = data.get("score")
        return cls((x, y, w, h), label, None if score is None else float(score))


@dataclass(frozen=True)
class Problem:
    """Something wrong with an input: ``kind`` (one of the constants above), ``where`` (a file,
    frame or task), ``detail`` (what and how to fix), ``box`` (the offending box, if any)."""

    kind: str
    where: str
    detail: str
    box: Box | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "where": self.where, "detail": self.detail}
        if self.box is not None:
            out["box"] = self.box.to_catalog()
        return out

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class LabeledImage:
    """An image with its ground-truth boxes.

    ``file_name`` is the image's name inside an exported dataset (unique per version);
    ``image_path`` the absolute path of the source bytes; ``frame_id``/``content_hash`` tie it to
    the catalog; ``group`` is the split group (frames of one group never straddle splits);
    ``split`` is set by readers of split datasets and by the exporter; ``meta`` carries what a
    source dataset says about the frame's origin (COCO image fields ``site``, ``camera``, ...).
    """

    file_name: str
    width: int
    height: int
    boxes: tuple[Box, ...] = ()
    image_path: str | None = None
    frame_id: int | None = None
    content_hash: str | None = None
    group: str | None = None
    split: str | None = None
    problems: tuple[Problem, ...] = field(default=(), compare=False)
    meta: dict[str, Any] | None = field(default=None, compare=False)  # site/camera/sequence/captured_at a reader found

    def with_boxes(self, boxes: Iterable[Box]) -> "LabeledImage":
        return replace(self, boxes=tuple(boxes))


def boxes_close(a: Sequence[Box], b: Sequence[Box], tol_px: float = 1e-6) -> bool:
    """True when two box lists hold the same labels and coordinates within ``tol_px``, in order."""
    if len(a) != len(b):
        return False
    for box_a, box_b in zip(a, b):
        if box_a.label != box_b.label:
            return False
        if any(abs(u - v) > tol_px for u, v in zip(box_a.xywh_px, box_b.xywh_px)):
            return False
    return True


def labels_hash(boxes: Iterable[Box]) -> str:
    """SHA-256 of a box list, independent of box order and of float noise below 1e-6 px.

    Two versions whose frame has the same ``labels_hash`` carry the same ground truth for it.
    """
    rows = sorted((b.label, *(round(v, 6) + 0.0 for v in b.xywh_px)) for b in boxes)
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def check_image(
    image: LabeledImage, class_names: Iterable[str] | None, *, clip_tolerance_px: float = CLIP_TOLERANCE_PX
) -> tuple[LabeledImage, list[Problem], int]:
    """Validate one image's boxes against its size and the class map.

    Returns ``(clean_image, problems, n_clipped)``: boxes of unknown classes, with non-finite or
    non-positive size, or more than ``clip_tolerance_px`` outside the image are removed and
    reported; boxes outside by less are clipped to the image and counted. An image with no boxes
    is reported as ``empty_frame`` (it is kept: the caller decides). ``class_names=None`` skips the
    class check.
    """
    known = None if class_names is None else set(class_names)
    where = image.image_path or image.file_name
    problems: list[Problem] = []
    kept: list[Box] = []
    n_clipped = 0
    W, H = float(image.width), float(image.height)
    for box in image.boxes:
        x, y, w, h = box.xywh_px
        if known is not None and box.label not in known:
            problems.append(Problem(UNKNOWN_CLASS, where, f"class {box.label!r} is not in the class map; add it there or relabel", box))
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            problems.append(Problem(DEGENERATE_BOX, where, f"box xywh_px={list(box.xywh_px)} has no area", box))
            continue
        x2, y2 = x + w, y + h
        overshoot = max(-x, -y, x2 - W, y2 - H)
        if overshoot > clip_tolerance_px:
            problems.append(Problem(
                BOX_OUTSIDE, where,
                f"box xywh_px={[round(v, 3) for v in box.xywh_px]} extends {overshoot:.2f} px outside the {image.width}x{image.height} image",
                box,
            ))
            continue
        if overshoot > 0:
            cx1, cy1 = max(x, 0.0), max(y, 0.0)
            cx2, cy2 = min(x2, W), min(y2, H)
            if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
                problems.append(Problem(DEGENERATE_BOX, where, f"box xywh_px={list(box.xywh_px)} has no area inside the image", box))
                continue
            box = Box((cx1, cy1, cx2 - cx1, cy2 - cy1), box.label, box.score)
            n_clipped += 1
        kept.append(box)
    if not kept:
        detail = "no boxes left after dropping bad ones" if image.boxes else "frame has no boxes (a negative example)"
        problems.append(Problem(EMPTY_FRAME, where, detail))
    return image.with_boxes(kept), problems, n_clipped


def parse_class_map(data: Any, source: str) -> list[str]:
    """Class names in id order from a list, ``{"names": [...]}``/``{"names": {0: ..}}`` (Ultralytics
    data.yaml) or ``{id: name}``."""
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict):
        try:
            items = sorted((int(k), v) for k, v in data.items())
        except (TypeError, ValueError):
            raise InputError(f"class map {source!r}: keys must be integer ids, got {list(data)[:5]}") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise InputError(f"class map {source!r}: ids must be 0..{len(items) - 1} without gaps")
        data = [v for _, v in items]
    if not isinstance(data, list) or not data:
        raise InputError(f"class map {source!r} must be a non-empty list of class names (YAML/JSON), or a data.yaml with 'names'")
    names = [str(name).strip() for name in data]
    if any(not name for name in names):
        raise InputError(f"class map {source!r} has an empty class name")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"class map {source!r} names a class twice: {', '.join(duplicates)}")
    return names


def load_class_map(path: str | Path) -> list[str]:
    """Read a class map file (YAML or JSON); returns the class names in id order."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read class map {str(path)!r}: {exc.strerror or exc}; pass --classes FILE or set 'classes'") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise different types; both mean a malformed file
        raise InputError(f"class map {str(path)!r} is not valid YAML/JSON: {exc}") from None
    return parse_class_map(data, str(path))
