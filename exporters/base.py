"""What every format provides: a streaming writer for a version folder and a dataset reader.

Version folder layout shared by all formats (images are written once, every format points at them):

    images/<split>/<file_name>            the frames (symlink, hardlink or copy)
    labels/<split>/<stem>.txt, data.yaml  yolo (Ultralytics layout)
    coco/<split>.json                     coco (file_name relative to images/<split>/)
    voc/<split>/<stem>.xml                voc (Pascal VOC XML, one per image)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

from exporters.types import LabeledImage

SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGES_DIR = "images"

# Bytes per read when copying or hashing files: memory stays flat whatever the file size.
CHUNK_BYTES = 256 * 1024

# (path relative to the version root, sha256 hex) for every file a writer produced
FileDigest = tuple[str, str]


class DatasetWriter(Protocol):
    """Writes one format into a version folder, one image at a time (memory does not grow)."""

    def add(self, image: LabeledImage) -> list[FileDigest]:
        """Write the labels of ``image`` (``image.split`` and ``image.file_name`` are set)."""

    def close(self) -> list[FileDigest]:
        """Finish files that span many images; returns their digests."""


@dataclass(frozen=True)
class Format:
    """A registered dataset format.

    ``writer(root, class_names)`` opens a :class:`DatasetWriter` on a version folder;
    ``read_dataset(path)`` yields :class:`LabeledImage` (with ``split`` and ``problems``) from an
    existing dataset on disk in this format; ``class_names(path)`` returns the dataset's own class
    map when the format stores one (else None).
    """

    name: str
    description: str
    writer: Callable[[Path, Sequence[str]], DatasetWriter]
    read_dataset: Callable[[Path], Iterator[LabeledImage]]
    class_names: Callable[[Path], list[str] | None]


def write_bytes(root: Path | str, relpath: str, data: bytes) -> FileDigest:
    """Write ``data`` to ``root/relpath`` (the folder must exist) and return its digest.

    Plain strings, not pathlib: pathlib interns every path part, so a million file names would
    grow the interpreter's intern table with the number of frames.
    """
    with open(os.path.join(root, relpath), "wb") as handle:
        handle.write(data)
    return relpath, hashlib.sha256(data).hexdigest()


def image_stem(file_name: str) -> str:
    """``"0000042-belt.jpg"`` -> ``"0000042-belt"``: label files are named after the image."""
    return file_name.rsplit(".", 1)[0] if "." in file_name else file_name


def format_number(value: float) -> str:
    """Shortest text that reads back to the same float (``repr``), with integers written bare."""
    value = float(value) + 0.0  # no "-0.0"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
