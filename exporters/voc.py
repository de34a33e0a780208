"""Pascal VOC XML <-> canonical boxes.

``bndbox`` holds ``xmin ymin xmax ymax`` (``xyxy_px``) as continuous 0-based pixel coordinates,
the convention of FiftyOne, CVAT and Roboflow (not the 1-based inclusive pixel indices of the 2007
devkit). Whole numbers are written bare (``12``), others as the shortest exact float text, so
integer readers still work on integer boxes and float readers get exact round trips.

Layout: ``voc/<split>/<stem>.xml`` next to ``images/<split>/``. Readers also accept the devkit
layout (``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main/<split>.txt``) and FiftyOne's
(``labels/`` + ``data/``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator, Sequence
from xml.sax.saxutils import escape

from curation.errors import InputError
from exporters.base import IMAGES_DIR, FileDigest, Format, format_number, image_stem, write_bytes
from exporters.types import MALFORMED, Box, LabeledImage, Problem

VOC_DIR = "voc"


def image_to_voc_xml(image: LabeledImage, *, folder: str = "", depth: int = 3) -> str:
    objects = []
    for box in image.boxes:
        x1, y1, x2, y2 = box.xyxy_px
        objects.append(
            "\t<object>\n"
            f"\t\t<name>{escape(box.label)}</name>\n"
            "\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
            + (f"\t\t<confidence>{format_number(box.score)}</confidence>\n" if box.score is not None else "")
            + "\t\t<bndbox>\n"
            f"\t\t\t<xmin>{format_number(x1)}</xmin>\n\t\t\t<ymin>{format_number(y1)}</ymin>\n"
            f"\t\t\t<xmax>{format_number(x2)}</xmax>\n\t\t\t<ymax>{format_number(y2)}</ymax>\n"
            "\t\t</bndbox>\n\t</object>\n"
        )
    return (
        "<annotation>\n"
        f"\t<folder>{escape(folder)}</folder>\n"
        f"\t<filename>{escape(image.file_name)}</filename>\n"
        "\t<source><database>beltcurate</database></source>\n"
        f"\t<size>\n\t\t<width>{int(image.width)}</width>\n\t\t<height>{int(image.height)}</height>\n\t\t<depth>{depth}</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n"
        + "".join(objects)
        + "</annotation>\n"
    )


def voc_xml_to_image(text: str | bytes, where: str, *, images_dir: Path | None = None, split: str | None = None) -> LabeledImage:
    """Parse one VOC annotation; bad objects become problems on the returned image."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return LabeledImage(file_name="", width=0, height=0, split=split, problems=(Problem(MALFORMED, where, f"not valid XML: {exc}"),))
    file_name = (root.findtext("filename") or "").strip()
    try:
        width = int(float(root.findtext("size/width") or 0))
        height = int(float(root.findtext("size/height") or 0))
    except ValueError:
        width = height = 0
    problems: list[Problem] = []
    if width <= 0 or height <= 0:
        problems.append(Problem(MALFORMED, where, "missing or invalid <size><width>/<height>"))
    boxes = []
    for index, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.append(Problem(MALFORMED, where, f"object {index} ({name or 'no name'}) has no numeric bndbox"))
            continue
        if not name:
            problems.append(Problem(MALFORMED, where, f"object {index} has no <name>"))
            continue
        confidence = obj.findtext("confidence")
        boxes.append(Box.from_xyxy_px((x1, y1, x2, y2), name, None if confidence is None else float(confidence)))
    image_path = str(images_dir / file_name) if images_dir is not None and file_name else None
    return LabeledImage(file_name=file_name, width=width, height=height, boxes=tuple(boxes),
                        image_path=image_path, split=split, problems=tuple(problems))


class VocWriter:
    """Writes ``voc/<split>/<stem>.xml`` per image."""

    def __init__(self, root: Path, class_names: Sequence[str]):
        self.root = Path(root)
        self.splits: set[str] = set()

    def add(self, image: LabeledImage) -> list[FileDigest]:
        split = image.split or "train"
        if split not in self.splits:
            (self.root / VOC_DIR / split).mkdir(parents=True, exist_ok=True)
            self.splits.add(split)
        xml = image_to_voc_xml(image, folder=split)
        return [write_bytes(self.root, f"{VOC_DIR}/{split}/{image_stem(image.file_name)}.xml", xml.encode())]

    def close(self) -> list[FileDigest]:
        return []


def _layouts(root: Path) -> list[tuple[str | None, list[Path], Path]]:
    """(split, xml files, images folder) for each split of a VOC dataset under ``root``."""
    if (root / VOC_DIR).is_dir():
        return [(d.name, sorted(d.glob("*.xml")), root / IMAGES_DIR / d.name)
                for d in sorted((root / VOC_DIR).iterdir()) if d.is_dir()]
    if (root / "Annotations").is_dir():
        annotations, images = root / "Annotations", root / "JPEGImages"
        sets = sorted((root / "ImageSets" / "Main").glob("*.txt")) if (root / "ImageSets" / "Main").is_dir() else []
        split_sets = [s for s in sets if s.stem in ("train", "val", "test", "trainval")]
        if split_sets and not any(s.stem in ("train", "val", "test") for s in split_sets):
            split_sets = []
        if split_sets:
            out = []
            for s in split_sets:
                if s.stem == "trainval" and any(x.stem in ("train", "val") for x in split_sets):
                    continue
                stems = [line.split()[0] for line in s.read_text().splitlines() if line.strip()]
                out.append((s.stem, [annotations / f"{stem}.xml" for stem in stems], images))
            return out
        return [(None, sorted(annotations.glob("*.xml")), images)]
    if (root / "labels").is_dir():
        return [(None, sorted((root / "labels").glob("*.xml")), root / "data")]
    xmls = sorted(root.glob("*.xml"))
    if xmls:
        return [(None, xmls, root)]
    raise InputError(f"no Pascal VOC XML found under {str(root)!r} (looked for voc/<split>/, Annotations/, labels/, *.xml)")


def read_dataset(path: Path) -> Iterator[LabeledImage]:
    for split, xml_files, images_dir in _layouts(Path(path)):
        for xml_path in xml_files:
            try:
                text = xml_path.read_bytes()
            except OSError as exc:
                yield LabeledImage(file_name=xml_path.name, width=0, height=0, split=split,
                                   problems=(Problem(MALFORMED, str(xml_path), f"cannot read: {exc.strerror or exc}"),))
                continue
            image = voc_xml_to_image(text, str(xml_path), images_dir=images_dir, split=split)
            if not image.file_name:
                # some tools leave <filename> empty: the image shares the XML's stem
                candidates = sorted(images_dir.glob(f"{xml_path.stem}.*"))
                if candidates:
                    from dataclasses import replace

                    image = replace(image, file_name=candidates[0].name, image_path=str(candidates[0]))
            yield image


def dataset_class_names(path: Path) -> list[str] | None:
    return None  # VOC stores names per object, not a class map


FORMAT = Format(
    name="voc",
    description="Pascal VOC XML, one file per image (voc/<split>/<stem>.xml)",
    writer=VocWriter,
    read_dataset=read_dataset,
    class_names=dataset_class_names,
)
