"""Label Studio RectangleLabels JSON <-> canonical boxes.

Label Studio stores a rectangle as ``value = {x, y, width, height}`` in ``ls_percent`` of the image
(0-100, top-left origin) plus ``rotation`` in degrees, clockwise around the top-left corner. The
pull path turns annotation ``result`` lists into boxes with :func:`ls_result_to_boxes`; the push
path turns detector boxes into pre-annotations with :func:`boxes_to_ls_predictions`.

Pixels come from the catalog frame size when given (it is the oriented size the boxes live in),
else from the ``original_width``/``original_height`` Label Studio recorded.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from curation.errors import InputError
from exporters.types import EMPTY_FRAME, MALFORMED, UNSUPPORTED, Box, LabeledImage, Problem, check_image

RECTANGLE_TYPE = "rectanglelabels"
# Region types that carry shapes we cannot turn into boxes; others (choices, textarea, rating)
# are per-image answers, not regions, and are ignored without a problem.
SHAPE_TYPES = {"polygonlabels", "keypointlabels", "brushlabels", "ellipselabels", "rectangle", "polygon", "keypoint", "brush", "ellipse"}
# Label Studio and the catalog disagree on the aspect ratio by more than this -> the image was
# shown rotated (EXIF) or resized unevenly, and percent boxes would land in the wrong place.
ASPECT_TOLERANCE = 0.01
# A rotated rectangle is replaced by its enclosing box: a note, not an error (strict keeps it).
ROTATED_BOX = "rotated_box"


def ls_result_to_boxes(
    results: Iterable[dict[str, Any]],
    class_names: Sequence[str] | None,
    *,
    strict: bool,
    width: int | None = None,
    height: int | None = None,
    where: str = "annotation",
) -> tuple[list[Box], list[Problem]]:
    """Convert one Label Studio annotation's ``result`` list to boxes in pixels.

    ``class_names`` is the class map (``None`` accepts any label). ``width``/``height``: the frame
    size from the catalog (preferred); else each region's ``original_width``/``original_height``.
    Rotated rectangles become their enclosing axis-aligned box (noted as a problem). Regions that
    cannot be converted (unknown class, several labels, no size, outside the image, polygons...)
    are dropped and reported; with ``strict=True`` any such problem raises :class:`InputError`.
    Returns ``(boxes, problems)``; an annotation with no regions is ``([], [])``.
    """
    boxes: list[Box] = []
    problems: list[Problem] = []
    for index, region in enumerate(results or []):
        region_where = f"{where} region {region.get('id', index)!s}"
        kind = region.get("type")
        if kind != RECTANGLE_TYPE:
            if kind in SHAPE_TYPES:
                problems.append(Problem(UNSUPPORTED, region_where, f"{kind} regions are not boxes; use RectangleLabels"))
            continue
        box, region_problems = _region_to_box(region, width, height, region_where)
        problems.extend(region_problems)
        if box is None:
            continue
        W = width or region.get("original_width")
        H = height or region.get("original_height")
        checked, check_problems, _ = check_image(LabeledImage("", int(W), int(H), (box,)), class_names)
        problems.extend(
            Problem(p.kind, region_where, p.detail, p.box) for p in check_problems if p.kind != EMPTY_FRAME
        )
        boxes.extend(checked.boxes)
    if strict and any(p.kind != ROTATED_BOX for p in problems):
        raise InputError(f"{where}: {len(problems)} region(s) cannot be converted: " + "; ".join(p.detail for p in problems[:5]))
    return boxes, problems


def _region_to_box(region: dict[str, Any], width: int | None, height: int | None, where: str) -> tuple[Box | None, list[Problem]]:
    value = region.get("value") or {}
    labels = value.get(RECTANGLE_TYPE) or []
    if len(labels) != 1:
        return None, [Problem(MALFORMED, where, f"rectangle has {len(labels)} labels {labels!r}; pick exactly one")]
    if region.get("image_rotation"):
        return None, [Problem(UNSUPPORTED, where, f"image was rotated {region['image_rotation']} degrees in the editor; relabel without rotating the image")]
    original_w, original_h = region.get("original_width"), region.get("original_height")
    W, H = width or original_w, height or original_h
    if not W or not H:
        return None, [Problem(MALFORMED, where, "no image size: region lacks original_width/original_height and no frame size was given")]
    problems: list[Problem] = []
    if width and height and original_w and original_h:
        if abs((original_w / original_h) / (width / height) - 1) > ASPECT_TOLERANCE:
            return None, [Problem(
                MALFORMED, where,
                f"Label Studio saw a {original_w}x{original_h} image but the frame is {width}x{height} "
                "(EXIF rotation?); boxes would be misplaced",
            )]
    try:
        x, y, w, h = (float(value[k]) * scale / 100.0 for k, scale in (("x", W), ("y", H), ("width", W), ("height", H)))
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None, [Problem(MALFORMED, where, f"rectangle value {value!r} lacks numeric x/y/width/height")]
    if rotation % 360:
        x, y, w, h = _enclosing_box(x, y, w, h, rotation)
        problems.append(Problem(ROTATED_BOX, where, f"rectangle rotated {rotation:g} degrees; using its enclosing axis-aligned box"))
    score = region.get("score")
    return Box((x, y, w, h), str(labels[0]), None if score is None else float(score)), problems


def _enclosing_box(x: float, y: float, w: float, h: float, rotation_deg: float) -> tuple[float, float, float, float]:
    """Axis-aligned box around a ``w`` x ``h`` rectangle rotated clockwise (y points down) about (x, y)."""
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    corners = [(dx * cos - dy * sin, dx * sin + dy * cos) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    xs = [x + cx for cx, _ in corners]
    ys = [y + cy for _, cy in corners]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def box_to_ls_region(box: Box, width: int, height: int, *, region_id: str, from_name: str = "label", to_name: str = "image") -> dict[str, Any]:
    x, y, w, h = (float(v) for v in box.xywh_px)
    region: dict[str, Any] = {
        "id": region_id,
        "type": RECTANGLE_TYPE,
        "from_name": from_name,
        "to_name": to_name,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {
            "x": x * 100.0 / width,
            "y": y * 100.0 / height,
            "width": w * 100.0 / width,
            "height": h * 100.0 / height,
            "rotation": 0,
            RECTANGLE_TYPE: [box.label],
        },
    }
    if box.score is not None:
        region["score"] = float(box.score)
    return region


def boxes_to_ls_predictions(boxes: Sequence[Box], width: int, height: int, from_name: str = "label", to_name: str = "image") -> list[dict]:
    """Boxes in pixels -> a Label Studio ``result`` list (RectangleLabels in percent).

    Region ids are ``b0, b1, ...`` (unique within the task, as Label Studio requires). Put the list
    under ``predictions[i]["result"]`` (with ``model_version`` and ``score``) or
    ``annotations[i]["result"]``.
    """
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} is not positive; cannot express boxes in percent")
    return [box_to_ls_region(box, width, height, region_id=f"b{i}", from_name=from_name, to_name=to_name) for i, box in enumerate(boxes)]
