"""Label Studio RectangleLabels (percent) <-> canonical boxes (pixels)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.errors import InputError
from exporters.labelstudio import ROTATED_BOX, boxes_to_ls_predictions, ls_result_to_boxes
from exporters.types import BOX_OUTSIDE, MALFORMED, UNKNOWN_CLASS, UNSUPPORTED, Box, boxes_close
from tests.support.boxes import CLASS_NAMES, labeled_images


@settings(max_examples=300, deadline=None)
@given(labeled_images())
def test_round_trip_within_1e6_px(image):
    results = boxes_to_ls_predictions(image.boxes, image.width, image.height)
    boxes, problems = ls_result_to_boxes(results, CLASS_NAMES, strict=True, width=image.width, height=image.height)
    assert problems == []
    assert boxes_close(boxes, image.boxes, 1e-6)


@settings(max_examples=100, deadline=None)
@given(labeled_images())
def test_round_trip_with_sizes_recorded_by_label_studio(image):
    results = boxes_to_ls_predictions(image.boxes, image.width, image.height)
    boxes, _ = ls_result_to_boxes(results, CLASS_NAMES, strict=True)  # original_width/height only
    assert boxes_close(boxes, image.boxes, 1e-6)


def test_percent_values_and_fields():
    (region,) = boxes_to_ls_predictions([Box((64, 48, 320, 240), "paper", 0.75)], 640, 480, from_name="lbl", to_name="img")
    assert region["value"] == {"x": 10.0, "y": 10.0, "width": 50.0, "height": 50.0, "rotation": 0, "rectanglelabels": ["paper"]}
    assert (region["from_name"], region["to_name"], region["type"]) == ("lbl", "img", "rectanglelabels")
    assert (region["original_width"], region["original_height"], region["score"]) == (640, 480, 0.75)


def _region(x, y, w, h, labels=("paper",), **extra):
    return {"id": "r1", "type": "rectanglelabels", "original_width": 200, "original_height": 100,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": extra.pop("rotation", 0), "rectanglelabels": list(labels)},
            **extra}


def test_unknown_class_is_dropped_and_reported_or_raises_when_strict():
    boxes, problems = ls_result_to_boxes([_region(10, 10, 10, 10, ("sofa",))], CLASS_NAMES, strict=False)
    assert boxes == [] and [p.kind for p in problems] == [UNKNOWN_CLASS]
    assert "sofa" in problems[0].detail
    with pytest.raises(InputError, match="sofa"):
        ls_result_to_boxes([_region(10, 10, 10, 10, ("sofa",))], CLASS_NAMES, strict=True)


def test_several_labels_on_one_rectangle_is_malformed():
    boxes, problems = ls_result_to_boxes([_region(10, 10, 10, 10, ("paper", "glass & jar"))], CLASS_NAMES, strict=False)
    assert boxes == [] and problems[0].kind == MALFORMED


def test_box_far_outside_is_reported_but_edge_rounding_is_clipped():
    boxes, problems = ls_result_to_boxes([_region(90, 10, 20, 10)], CLASS_NAMES, strict=False)
    assert boxes == [] and problems[0].kind == BOX_OUTSIDE
    boxes, problems = ls_result_to_boxes([_region(90, 10, 10.1, 10)], CLASS_NAMES, strict=False)  # 0.2 px past the edge
    assert problems == [] and boxes[0].xywh_px[0] + boxes[0].xywh_px[2] == 200


def test_rotated_rectangle_becomes_enclosing_box_with_a_note():
    # 20x10 px box at (100, 50) rotated 90 degrees clockwise about its top-left corner
    region = _region(50, 50, 10, 10, rotation=90)
    boxes, problems = ls_result_to_boxes([region], None, strict=True)
    assert [p.kind for p in problems] == [ROTATED_BOX]
    x, y, w, h = boxes[0].xywh_px
    assert (x, y, w, h) == pytest.approx((90, 50, 10, 20))


def test_non_box_regions():
    results = [{"type": "choices", "value": {"choices": ["ok"]}},
               {"type": "polygonlabels", "id": "p", "value": {"points": [[1, 2]], "polygonlabels": ["paper"]}}]
    boxes, problems = ls_result_to_boxes(results, CLASS_NAMES, strict=False)
    assert boxes == [] and [p.kind for p in problems] == [UNSUPPORTED]


def test_frame_size_wins_and_aspect_mismatch_is_caught():
    boxes, problems = ls_result_to_boxes([_region(10, 10, 10, 10)], CLASS_NAMES, strict=True, width=400, height=200)
    assert boxes[0].xywh_px == pytest.approx((40, 20, 40, 20))
    boxes, problems = ls_result_to_boxes([_region(10, 10, 10, 10)], CLASS_NAMES, strict=False, width=100, height=200)
    assert boxes == [] and "EXIF" in problems[0].detail


def test_missing_size_is_reported():
    region = _region(10, 10, 10, 10)
    del region["original_width"]
    boxes, problems = ls_result_to_boxes([region], CLASS_NAMES, strict=False)
    assert boxes == [] and problems[0].kind == MALFORMED


@given(st.integers(-5, 0), st.integers(1, 10))
def test_non_positive_size_rejected_for_predictions(width, height):
    with pytest.raises(InputError):
        boxes_to_ls_predictions([], width, height)
