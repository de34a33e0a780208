"""Canonical boxes: validation against the image and class map, label hashes, class map files."""

from __future__ import annotations

import json
import math

import pytest

from curation.errors import InputError
from exporters.types import (
    BOX_OUTSIDE, DEGENERATE_BOX, EMPTY_FRAME, UNKNOWN_CLASS, Box, LabeledImage, check_image, labels_hash, load_class_map,
)


def _image(*boxes, width=100, height=50):
    return LabeledImage("f.jpg", width, height, tuple(boxes))


def test_good_boxes_pass_unchanged():
    image = _image(Box((0, 0, 100, 50), "a"), Box((10.5, 2.25, 3, 4), "b"))
    clean, problems, clipped = check_image(image, ["a", "b"])
    assert clean == image and problems == [] and clipped == 0


@pytest.mark.parametrize("box, kind", [
    (Box((10, 10, 5, 5), "zebra"), UNKNOWN_CLASS),
    (Box((10, 10, 0, 5), "a"), DEGENERATE_BOX),
    (Box((10, 10, -3, 5), "a"), DEGENERATE_BOX),
    (Box((10, math.nan, 3, 5), "a"), DEGENERATE_BOX),
    (Box((90, 10, 20, 5), "a"), BOX_OUTSIDE),
    (Box((-2, 10, 20, 5), "a"), BOX_OUTSIDE),
    (Box((200, 10, 20, 5), "a"), BOX_OUTSIDE),
])
def test_bad_boxes_are_removed_and_named(box, kind):
    clean, problems, _ = check_image(_image(box, Box((1, 1, 2, 2), "a")), ["a"])
    assert clean.boxes == (Box((1, 1, 2, 2), "a"),)
    assert [p.kind for p in problems] == [kind]
    assert problems[0].box == box and problems[0].where == "f.jpg"


def test_rounding_overshoot_is_clipped_and_counted():
    clean, problems, clipped = check_image(_image(Box((-0.2, 0, 100.3, 50.4), "a")), ["a"])
    assert problems == [] and clipped == 1
    assert clean.boxes[0].xywh_px == (0.0, 0.0, 100.0, 50.0)


def test_empty_frame_is_reported_not_dropped():
    clean, problems, _ = check_image(_image(), ["a"])
    assert clean.boxes == () and [p.kind for p in problems] == [EMPTY_FRAME]
    assert "negative example" in problems[0].detail
    _, problems, _ = check_image(_image(Box((1, 1, 2, 2), "zebra")), ["a"])
    assert [p.kind for p in problems] == [UNKNOWN_CLASS, EMPTY_FRAME]


def test_labels_hash_ignores_order_and_float_noise_but_not_changes():
    a = [Box((1, 2, 3, 4), "a"), Box((5, 6, 7, 8), "b")]
    assert labels_hash(a) == labels_hash(a[::-1])
    assert labels_hash(a) == labels_hash([Box((1 + 1e-9, 2, 3, 4), "a"), a[1]])
    assert labels_hash(a) != labels_hash([Box((1.01, 2, 3, 4), "a"), a[1]])
    assert labels_hash(a) != labels_hash([Box((1, 2, 3, 4), "b"), a[1]])
    assert labels_hash(a) != labels_hash(a[:1])


def test_catalog_form_round_trips_and_rejects_garbage():
    box = Box((1.5, 2, 3, 4), "a", 0.25)
    assert Box.from_catalog(box.to_catalog()) == box
    assert Box.from_catalog(json.loads(json.dumps(box.to_catalog()))) == box
    with pytest.raises(InputError, match="xywh_px"):
        Box.from_catalog({"label": "a"})


@pytest.mark.parametrize("text, suffix, names", [
    ("- can\n- glass\n", ".yaml", ["can", "glass"]),
    ('["can", "glass"]', ".json", ["can", "glass"]),
    ("names: ['can', 'glass']\nnc: 2\n", ".yaml", ["can", "glass"]),
    ("names:\n  0: can\n  1: glass\n", ".yaml", ["can", "glass"]),
])
def test_class_map_files(tmp_path, text, suffix, names):
    path = tmp_path / f"classes{suffix}"
    path.write_text(text)
    assert load_class_map(path) == names


@pytest.mark.parametrize("text, message", [
    ("- can\n- can\n", "twice"),
    ("[]", "non-empty"),
    ("names:\n  0: can\n  2: glass\n", "without gaps"),
    ("- can\n- [unclosed\n", "not valid"),
])
def test_bad_class_maps_name_the_file(tmp_path, text, message):
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_class_map(path)
    assert "classes.yaml" in str(info.value)


def test_missing_class_map_says_how_to_fix(tmp_path):
    with pytest.raises(InputError, match="--classes"):
        load_class_map(tmp_path / "nope.yaml")
