"""Hypothesis strategies for canonical boxes and labeled images (shared by the exporter tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from exporters.types import Box, LabeledImage

CLASS_NAMES = ["cardboard", "paper", "pet_bottle", "battery", "glass & jar", "<film>"]


@st.composite
def boxes_in(draw, width: int, height: int, labels=CLASS_NAMES, scores: bool = False) -> Box:
    """A box with positive size fully inside a ``width`` x ``height`` image."""
    x = draw(st.floats(0, width - 0.01, allow_nan=False))
    y = draw(st.floats(0, height - 0.01, allow_nan=False))
    w = draw(st.floats(0.01, max(0.01, width - x), allow_nan=False))
    h = draw(st.floats(0.01, max(0.01, height - y), allow_nan=False))
    score = draw(st.floats(0, 1)) if scores else None
    return Box((x, y, w, h), draw(st.sampled_from(labels)), score)


@st.composite
def labeled_images(draw, max_boxes: int = 12, labels=CLASS_NAMES) -> LabeledImage:
    width = draw(st.integers(1, 4000))
    height = draw(st.integers(1, 4000))
    boxes = draw(st.lists(boxes_in(width, height, labels), max_size=max_boxes))
    return LabeledImage(file_name="frame.jpg", width=width, height=height, boxes=tuple(boxes))
