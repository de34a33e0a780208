"""YOLO (Ultralytics layout) <-> canonical boxes.

A YOLO row is ``class_id cx cy w h`` with ``yolo_cxcywh_norm`` coordinates: box centre and size
divided by the image width/height, class ids 0-based in ``data.yaml`` ``names`` order. Layout:

    data.yaml                      train: images/train, val: images/val, test: images/test, names
    images/<split>/<name>.jpg
    labels/<split>/<name>.txt      one row per box; an empty file = an image with no objects

``data.yaml`` has no ``path`` key, so Ultralytics and FiftyOne resolve the splits relative to the
file itself and the version folder can be moved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from curation.errors import InputError
from exporters.base import IMAGES_DIR, SPLITS, FileDigest, Format, format_number, image_stem, write_bytes
from exporters.types import MALFORMED, UNKNOWN_CLASS, Box, LabeledImage, Problem

LABELS_DIR = "labels"
DATA_YAML = "data.yaml"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
# Ultralytics names these split keys; val also appears as "valid" in Roboflow folders.
YAML_SPLIT_KEYS = ("train", "val", "test")
POLYGON_AS_BOX = "polygon_as_box"
# An image with no label file is an image with no objects (Ultralytics rule); noted, not an error.
NO_LABEL_FILE = "no_label_file"


def box_to_yolo_row(box: Box, width: int, height: int, class_id: int) -> str:
    """``"class_id cx cy w h"`` normalized by the image size (shortest exact float text)."""
    x, y, w, h = (float(v) for v in box.xywh_px)
    cx, cy = (x + w / 2) / width, (y + h / 2) / height
    return f"{class_id} {format_number(cx)} {format_number(cy)} {format_number(w / width)} {format_number(h / height)}"


def yolo_row_to_box(row: str, width: int, height: int, class_names: Sequence[str], where: str) -> tuple[Box | None, Problem | None]:
    """Parse one label row. A polygon row (``class x1 y1 x2 y2 ...``, as Ultralytics segment
    labels) becomes its enclosing box, as Ultralytics does for detection, with a note."""
    parts = row.split()
    try:
        class_id = int(parts[0])
        values = [float(v) for v in parts[1:]]
    except (ValueError, IndexError):
        return None, Problem(MALFORMED, where, f"row {row.strip()!r} is not 'class_id cx cy w h' numbers")
    if not 0 <= class_id < len(class_names):
        return None, Problem(UNKNOWN_CLASS, where, f"class id {class_id} is not in data.yaml names (0..{len(class_names) - 1})")
    label = class_names[class_id]
    if len(values) == 4:
        cx, cy, w, h = values
        bw, bh = w * width, h * height
        return Box((cx * width - bw / 2, cy * height - bh / 2, bw, bh), label), None
    if len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        box = Box.from_xyxy_px((min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height), label)
        return box, Problem(POLYGON_AS_BOX, where, f"polygon row of {len(xs)} points converted to its enclosing box")
    return None, Problem(MALFORMED, where, f"row has {len(parts)} values; expected 5 (class cx cy w h) or a polygon")


def data_yaml_text(class_names: Sequence[str], splits: Sequence[str]) -> str:
    import yaml

    doc = {split: f"{IMAGES_DIR}/{split}" for split in splits}
    doc["nc"] = len(class_names)
    doc["names"] = {i: name for i, name in enumerate(class_names)}
    return "# Ultralytics YOLO dataset written by beltcurate; paths are relative to this file.\n" + yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True
    )


class YoloWriter:
    """Writes ``labels/<split>/<stem>.txt`` per image and ``data.yaml`` at close."""

    def __init__(self, root: Path, class_names: Sequence[str]):
        self.root = Path(root)
        self.class_names = list(class_names)
        self.class_index = {name: i for i, name in enumerate(self.class_names)}
        self.splits: set[str] = set()

    def add(self, image: LabeledImage) -> list[FileDigest]:
        split = image.split or "train"
        if split not in self.splits:
            (self.root / LABELS_DIR / split).mkdir(parents=True, exist_ok=True)
            self.splits.add(split)
        rows = [box_to_yolo_row(box, image.width, image.height, self.class_index[box.label]) for box in image.boxes]
        text = "".join(row + "\n" for row in rows)
        return [write_bytes(self.root, f"{LABELS_DIR}/{split}/{image_stem(image.file_name)}.txt", text.encode())]

    def close(self) -> list[FileDigest]:
        ordered = [s for s in SPLITS if s in self.splits] + sorted(self.splits - set(SPLITS))
        return [write_bytes(self.root, DATA_YAML, data_yaml_text(self.class_names, ordered).encode())]


def find_data_yaml(root: Path) -> Path:
    if root.is_file():
        return root
    for name in (DATA_YAML, "dataset.yaml", "data.yml"):
        if (root / name).is_file():
            return root / name
    raise InputError(f"no data.yaml under {str(root)!r}; a YOLO dataset needs data.yaml with 'names' and train/val/test image folders")


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise InputError(f"{str(path)!r} is not a YOLO data.yaml (needs a 'names' list)")
    return doc


def dataset_class_names(path: Path) -> list[str]:
    from exporters.types import parse_class_map

    yaml_path = find_data_yaml(Path(path))
    return parse_class_map(_read_yaml(yaml_path), str(yaml_path))


def _resolve_split_dir(yaml_dir: Path, base: str, entry: str) -> Path | None:
    """A split's image folder; Roboflow writes ``../train/images`` for a folder next to the yaml."""
    candidates = [yaml_dir / base / entry, yaml_dir / entry, yaml_dir / entry.lstrip("./").removeprefix("../")]
    if os.path.isabs(entry):
        candidates.insert(0, Path(entry))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def labels_path_for(image_path: Path) -> Path:
    """Ultralytics rule: the last ``/images/`` in the path becomes ``/labels/``, suffix ``.txt``."""
    text = str(image_path)
    marker = f"{os.sep}{IMAGES_DIR}{os.sep}"
    head, sep, tail = text.rpartition(marker)
    if not sep:
        return image_path.with_suffix(".txt")
    return Path(head + f"{os.sep}{LABELS_DIR}{os.sep}" + tail).with_suffix(".txt")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the image header (no full decode)."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_dataset(path: Path) -> Iterator[LabeledImage]:
    """Every image of every split in data.yaml, with its boxes in pixels (image headers are read
    for the size). An image without a label file is an image with no objects (Ultralytics rule)."""
    yaml_path = find_data_yaml(Path(path))
    doc = _read_yaml(yaml_path)
    class_names = dataset_class_names(yaml_path)
    base = str(doc.get("path") or ".")
    seen: set[Path] = set()
    for key in YAML_SPLIT_KEYS:
        entries = doc.get(key)
        if not entries:
            continue
        for entry in [entries] if isinstance(entries, str) else list(entries):
            split_dir = _resolve_split_dir(yaml_path.parent, base, str(entry))
            if split_dir is None:
                raise InputError(f"{str(yaml_path)!r}: {key} folder {entry!r} does not exist")
            if split_dir in seen:
                continue
            seen.add(split_dir)
            for image_path in sorted(p for p in split_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
                yield _read_image(image_path, split_dir, key, class_names)


def _read_image(image_path: Path, split_dir: Path, split: str, class_names: Sequence[str]) -> LabeledImage:
    where = str(image_path)
    try:
        width, height = image_size(image_path)
    except OSError as exc:
        return LabeledImage(file_name=image_path.name, width=0, height=0, image_path=where, split=split,
                            problems=(Problem(MALFORMED, where, f"cannot read image header: {exc}"),))
    label_path = labels_path_for(image_path)
    boxes, problems = [], []
    if label_path.is_file():
        for line_number, row in enumerate(label_path.read_text().splitlines(), start=1):
            if not row.strip():
                continue
            box, problem = yolo_row_to_box(row, width, height, class_names, f"{label_path}:{line_number}")
            if box is not None:
                boxes.append(box)
            if problem is not None:
                problems.append(problem)
    else:
        problems.append(Problem(NO_LABEL_FILE, where, f"no label file {label_path.name}; read as an image with no objects"))
    return LabeledImage(
        file_name=str(image_path.relative_to(split_dir)), width=width, height=height, boxes=tuple(boxes),
        image_path=where, split=split, problems=tuple(problems),
    )


FORMAT = Format(
    name="yolo",
    description="Ultralytics YOLO: data.yaml + labels/<split>/*.txt next to images/<split>/",
    writer=YoloWriter,
    read_dataset=read_dataset,
    class_names=dataset_class_names,
)
