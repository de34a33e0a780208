"""FiftyOne ``Detections`` <-> canonical boxes, and a dataset version as a FiftyOne dataset.

FiftyOne's ``bounding_box`` is ``[x, y, w, h]`` of the top-left corner and size divided by the
image width/height (relative, 0-1). fiftyone is imported inside the functions: importing it
reads the database settings (see curation/fomongo.py), and ``beltcurate --help`` must stay fast.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from curation.errors import InputError
from exporters.types import Box, LabeledImage


def _fo():
    try:
        import fiftyone as fo
    except ImportError as exc:  # pragma: no cover - fiftyone is in the pinned stack
        raise InputError("FiftyOne is not installed; pip install -r requirements/lock.txt") from exc
    return fo


def box_to_fo_detection(box: Box, width: int, height: int, **fields: Any):
    """One box as a ``fo.Detection`` (relative coordinates); extra ``fields`` are set on it."""
    fo = _fo()
    x, y, w, h = (float(v) for v in box.xywh_px)
    detection = fo.Detection(label=box.label, bounding_box=[x / width, y / height, w / width, h / height], **fields)
    if box.score is not None:
        detection.confidence = float(box.score)
    return detection


def boxes_to_fo_detections(boxes: Sequence[Box], width: int, height: int):
    """Boxes in pixels -> ``fo.Detections``."""
    if width <= 0 or height <= 0:
        raise InputError(f"image size {width}x{height} is not positive; cannot express boxes relative to it")
    fo = _fo()
    return fo.Detections(detections=[box_to_fo_detection(box, width, height) for box in boxes])


def fo_detections_to_boxes(detections, width: int, height: int) -> list[Box]:
    """``fo.Detections`` (or a list of ``fo.Detection``, or None) -> boxes in pixels."""
    if detections is None:
        return []
    items = getattr(detections, "detections", detections)
    boxes = []
    for detection in items:
        x, y, w, h = detection.bounding_box
        confidence = getattr(detection, "confidence", None)
        boxes.append(Box((x * width, y * height, w * width, h * height), str(detection.label),
                         None if confidence is None else float(confidence)))
    return boxes


def images_to_dataset(images: Iterable[LabeledImage], name: str, *, label_field: str = "ground_truth", overwrite: bool = False,
                      batch_size: int = 1000):
    """A FiftyOne dataset with one sample per image: ``filepath``, ``metadata`` (size), the boxes
    in ``label_field``, the split as a tag and ``frame_id`` when known."""
    fo = _fo()
    if fo.dataset_exists(name):
        if not overwrite:
            raise InputError(f"FiftyOne dataset {name!r} already exists; pass overwrite=True or pick another name")
        fo.delete_dataset(name)
    dataset = fo.Dataset(name)
    batch = []
    for image in images:
        if not image.image_path:
            raise InputError(f"image {image.file_name!r} has no path; FiftyOne samples need a file")
        sample = fo.Sample(
            filepath=str(Path(image.image_path).absolute()),
            metadata=fo.ImageMetadata(width=image.width, height=image.height),
            tags=[image.split] if image.split else [],
        )
        sample[label_field] = boxes_to_fo_detections(image.boxes, image.width, image.height)
        if image.frame_id is not None:
            sample["frame_id"] = int(image.frame_id)
        batch.append(sample)
        if len(batch) >= batch_size:
            dataset.add_samples(batch, progress=False)
            batch = []
    if batch:
        dataset.add_samples(batch, progress=False)
    return dataset


def dataset_to_images(dataset, *, label_field: str = "ground_truth") -> Iterator[LabeledImage]:
    """Each sample of a FiftyOne dataset or view as a :class:`LabeledImage` (metadata is computed
    where missing, so image sizes are known)."""
    if dataset.exists("metadata", False).count():
        dataset.compute_metadata()
    for sample in dataset.iter_samples():
        width, height = int(sample.metadata.width), int(sample.metadata.height)
        split = next((tag for tag in sample.tags if tag in ("train", "val", "test")), None)
        frame_id = sample["frame_id"] if sample.has_field("frame_id") else None
        yield LabeledImage(
            file_name=Path(sample.filepath).name, width=width, height=height,
            boxes=tuple(fo_detections_to_boxes(sample[label_field], width, height)),
            image_path=sample.filepath, frame_id=frame_id, split=split,
        )


def version_to_dataset(version_dir: str | Path, name: str, *, label_field: str = "ground_truth", overwrite: bool = False):
    """Load an exported dataset version (from its COCO, else YOLO, else VOC labels) into FiftyOne."""
    from exporters import EXPORTERS
    from exporters.versions import iter_frames, read_manifest

    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    fmt_name = next((f for f in ("coco", "yolo", "voc") if f in manifest["formats"]), None)
    if fmt_name is None:
        raise InputError(f"version {str(version_dir)!r} has no coco/yolo/voc labels to load")
    frame_of_file = {Path(row["file"]).name: row["frame_id"] for row in iter_frames(version_dir)}
    images = (
        replace(image, frame_id=frame_of_file.get(Path(image.file_name).name))
        for image in EXPORTERS.get(fmt_name).read_dataset(version_dir)
    )
    return images_to_dataset(images, name, label_field=label_field, overwrite=overwrite)
