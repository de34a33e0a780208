"""COCO detection JSON <-> canonical boxes.

COCO ``bbox`` is ``[x, y, width, height]`` in absolute pixels, top-left: the canonical convention,
so coordinates are copied unchanged (floats written with ``repr``, which reads back bit-exact).
Category ids are the class map position + 1 (COCO reserves 0 for the background).

Writing streams: per split, image and annotation records go to two part files that are joined
into ``coco/<split>.json`` at close, so memory does not grow with the number of frames.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from curation.errors import InputError
from exporters.base import CHUNK_BYTES, IMAGES_DIR, FileDigest, Format
from exporters.types import MALFORMED, UNSUPPORTED, Box, LabeledImage, Problem

COCO_DIR = "coco"
# Extra image fields (written by beltcurate synth and some tools) kept as LabeledImage.meta.
META_KEYS = ("site", "line", "camera", "sequence", "captured_at")
PARTS_DIR = ".parts"


def category_id(class_index: int) -> int:
    """COCO category id of the class at ``class_index`` in the class map (1-based)."""
    return class_index + 1


def categories(class_names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"id": category_id(i), "name": name, "supercategory": "object"} for i, name in enumerate(class_names)]


def box_to_coco(box: Box, *, annotation_id: int, image_id: int, class_index: int) -> dict[str, Any]:
    x, y, w, h = (float(v) for v in box.xywh_px)
    out = {"id": annotation_id, "image_id": image_id, "category_id": category_id(class_index),
           "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
    if box.score is not None:
        out["score"] = float(box.score)
    return out


def coco_to_box(annotation: dict[str, Any], names_by_category: dict[int, str], where: str) -> Box | Problem:
    """One COCO annotation as a canonical box, or the problem that prevents it."""
    if annotation.get("iscrowd"):
        return Problem(UNSUPPORTED, where, f"annotation {annotation.get('id')} is a crowd region (iscrowd=1); crowd regions are not objects")
    bbox = annotation.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return Problem(MALFORMED, where, f"annotation {annotation.get('id')} has no valid bbox [x, y, w, h] (got {bbox!r})")
    name = names_by_category.get(annotation.get("category_id"))  # type: ignore[arg-type]
    if name is None:
        return Problem(MALFORMED, where, f"annotation {annotation.get('id')} has category_id {annotation.get('category_id')!r} not in 'categories'")
    score = annotation.get("score")
    return Box((x, y, w, h), name, None if score is None else float(score))


def _annotation_line(annotation_id: int, image_id: int, cat_id: int, box: Box) -> str:
    # Hand-formatted: 5x faster than json.dumps per record at a million boxes; repr of a finite
    # float is valid JSON and reads back exactly (check_image rejects non-finite boxes first).
    x, y, w, h = (float(v) + 0.0 for v in box.xywh_px)
    score = "" if box.score is None else f',"score":{float(box.score)!r}'
    return (f'{{"id":{annotation_id},"image_id":{image_id},"category_id":{cat_id},'
            f'"bbox":[{x!r},{y!r},{w!r},{h!r}],"area":{w * h!r},"iscrowd":0{score}}}')


class CocoWriter:
    """Writes ``coco/<split>.json``; image ids are catalog frame ids when known."""

    def __init__(self, root: Path, class_names: Sequence[str]):
        self.root = Path(root)
        self.class_names = list(class_names)
        self.class_index = {name: i for i, name in enumerate(self.class_names)}
        self.parts = self.root / COCO_DIR / PARTS_DIR
        self.parts.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, tuple[Any, Any]] = {}
        self._first: dict[str, list[bool]] = {}
        self._next_annotation_id = 1
        self._next_image_id = 1

    def _split_files(self, split: str):
        if split not in self._files:
            images = open(self.parts / f"{split}.images", "w", encoding="utf-8")
            annotations = open(self.parts / f"{split}.annotations", "w", encoding="utf-8")
            self._files[split] = (images, annotations)
            self._first[split] = [True, True]
        return self._files[split], self._first[split]

    def add(self, image: LabeledImage) -> list[FileDigest]:
        split = image.split or "train"
        (images_file, annotations_file), first = self._split_files(split)
        if image.frame_id is not None:
            image_id = int(image.frame_id)
        else:
            image_id = self._next_image_id
            self._next_image_id += 1
        record = {"id": image_id, "file_name": image.file_name, "width": int(image.width), "height": int(image.height)}
        images_file.write(("" if first[0] else ",\n") + json.dumps(record, ensure_ascii=False))
        first[0] = False
        for box in image.boxes:
            line = _annotation_line(self._next_annotation_id, image_id, category_id(self.class_index[box.label]), box)
            annotations_file.write(("" if first[1] else ",\n") + line)
            first[1] = False
            self._next_annotation_id += 1
        return []

    def close(self) -> list[FileDigest]:
        digests = []
        header_categories = json.dumps(categories(self.class_names), ensure_ascii=False)
        for split, (images_file, annotations_file) in sorted(self._files.items()):
            images_file.close()
            annotations_file.close()
            relpath = f"{COCO_DIR}/{split}.json"
            sha = hashlib.sha256()
            with open(self.root / relpath, "wb") as out:
                def put(data: bytes) -> None:
                    out.write(data)
                    sha.update(data)

                put(('{"info":{"description":"beltcurate dataset version","version":"1.0"},"licenses":[],'
                     f'"categories":{header_categories},"images":[\n').encode())
                _copy_into(self.parts / f"{split}.images", put)
                put(b'\n],"annotations":[\n')
                _copy_into(self.parts / f"{split}.annotations", put)
                put(b"\n]}\n")
            digests.append((relpath, sha.hexdigest()))
        shutil.rmtree(self.parts, ignore_errors=True)
        return digests


def _copy_into(path: Path, put) -> None:
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            put(chunk)


def read_coco(json_path: str | Path, images_dir: str | Path | None = None, *, split: str | None = None) -> Iterator[LabeledImage]:
    """Yield every image of a COCO detection file with its boxes (problems attached per image).

    ``images_dir`` is where ``file_name`` is relative to (default: the JSON file's folder).
    """
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read COCO file {str(json_path)!r}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise InputError(f"{str(json_path)!r} is not a COCO detection file (needs 'images' and 'categories' lists)")
    images_dir = Path(images_dir) if images_dir is not None else json_path.parent
    names_by_category = {c["id"]: str(c["name"]) for c in data["categories"]}
    by_image: dict[Any, list[dict]] = {}
    for annotation in data.get("annotations") or []:
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    for record in data["images"]:
        file_name = str(record.get("file_name", ""))
        where = f"{json_path.name}:{file_name}"
        boxes, problems = [], []
        for annotation in by_image.pop(record.get("id"), []):
            result = coco_to_box(annotation, names_by_category, where)
            (boxes if isinstance(result, Box) else problems).append(result)
        yield LabeledImage(
            file_name=file_name, width=int(record.get("width") or 0), height=int(record.get("height") or 0),
            boxes=tuple(boxes), image_path=str(images_dir / file_name), split=split, problems=tuple(problems),
            meta={key: record[key] for key in META_KEYS if record.get(key) is not None} or None,
        )
    for image_id, orphans in by_image.items():
        # annotations whose image is not listed cannot be placed anywhere: say so
        yield LabeledImage(
            file_name="", width=0, height=0, split=split,
            problems=(Problem(MALFORMED, f"{json_path.name}", f"{len(orphans)} annotation(s) refer to image_id {image_id!r}, which is not in 'images'"),),
        )


def _split_name(json_path: Path) -> str:
    stem = json_path.stem
    if stem in ("_annotations.coco", "labels", "annotations"):
        return json_path.parent.name
    return stem.removeprefix("instances_")


def _find_images_dir(json_path: Path, root: Path, first_file: str | None) -> Path:
    split = _split_name(json_path)
    candidates = [json_path.parent, json_path.parent / "data", json_path.parent / "images",
                  root / IMAGES_DIR / split, root / split, root / IMAGES_DIR, root / "data", root]
    if first_file:
        for candidate in candidates:
            if (candidate / first_file).is_file():
                return candidate
    return json_path.parent


def coco_files(root: Path) -> list[Path]:
    """The COCO JSON files of a dataset: the file itself, ``coco/*.json``, ``annotations/*.json``,
    ``labels.json`` (FiftyOne) or ``<split>/_annotations.coco.json`` (Roboflow)."""
    if root.is_file():
        return [root]
    for pattern in (f"{COCO_DIR}/*.json", "annotations/*.json", "labels.json", "*/_annotations.coco.json", "*.json"):
        found = sorted(root.glob(pattern))
        if found:
            return found
    raise InputError(f"no COCO JSON found under {str(root)!r} (looked for coco/*.json, annotations/*.json, labels.json, */_annotations.coco.json)")


def read_dataset(path: Path) -> Iterator[LabeledImage]:
    root = Path(path)
    for json_path in coco_files(root):
        try:
            first = next(iter(json.loads(json_path.read_text()).get("images") or []), None)
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"cannot read COCO file {str(json_path)!r}: {exc}") from None
        images_dir = _find_images_dir(json_path, root if root.is_dir() else json_path.parent, first and first.get("file_name"))
        yield from read_coco(json_path, images_dir, split=_split_name(json_path))


def dataset_class_names(path: Path) -> list[str] | None:
    """Class names ordered by category id, from the first COCO file of the dataset."""
    json_path = coco_files(Path(path))[0]
    data = json.loads(json_path.read_text())
    return [str(c["name"]) for c in sorted(data.get("categories") or [], key=lambda c: c["id"])] or None


FORMAT = Format(
    name="coco",
    description="COCO detection JSON, one file per split (coco/<split>.json)",
    writer=CocoWriter,
    read_dataset=read_dataset,
    class_names=dataset_class_names,
)
