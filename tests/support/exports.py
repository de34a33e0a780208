"""Shared inputs for the exporter tests: a tiny golden set and helpers to write/read a format."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from exporters.types import Box, LabeledImage

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "data" / "golden"
GOLDEN_CLASSES = ["can", "glass & jar", "<film>"]
GOLDEN_IMAGES = (
    LabeledImage("00000001-belt_a.jpg", 64, 48, (Box((2, 3, 10.5, 20), "can"), Box((0.125, 40, 63.875, 8), "glass & jar")),
                 frame_id=1, split="train"),
    LabeledImage("00000002-belt_b.jpg", 64, 48, (), frame_id=2, split="val"),
    LabeledImage("00000003-belt_c.jpg", 32, 32, (Box((1 / 3, 5, 7, 8), "<film>"),), frame_id=3, split="train"),
)


def write_jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", quality=80)


def write_with(fmt: str, root: Path, images, class_names, *, with_images: bool = False) -> list[tuple[str, str]]:
    """Write ``images`` (split set) with one format's writer into ``root``; returns file digests."""
    from exporters import EXPORTERS

    writer = EXPORTERS.get(fmt).writer(root, class_names)
    digests = []
    for i, image in enumerate(images):
        if with_images:
            write_jpeg(root / "images" / image.split / image.file_name, image.width, image.height, seed=i)
        digests += writer.add(image)
    return digests + writer.close()


def by_name(images) -> dict[str, LabeledImage]:
    return {Path(image.file_name).name: image for image in images}


def strip(image: LabeledImage) -> LabeledImage:
    """Only what a format stores: name, size, boxes, split."""
    return replace(image, image_path=None, frame_id=None, content_hash=None, group=None, problems=(), meta=None)
