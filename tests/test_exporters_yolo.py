"""YOLO (Ultralytics layout): round trips within 1e-6 px, golden files, dataset reading rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings

from curation.errors import InputError
from exporters.types import MALFORMED, UNKNOWN_CLASS, boxes_close
from exporters.yolo import NO_LABEL_FILE, POLYGON_AS_BOX, box_to_yolo_row, labels_path_for, read_dataset, yolo_row_to_box
from tests.support.boxes import CLASS_NAMES, labeled_images
from tests.support.exports import GOLDEN_CLASSES, GOLDEN_DIR, GOLDEN_IMAGES, by_name, strip, write_jpeg, write_with


@settings(max_examples=300, deadline=None)
@given(labeled_images())
def test_row_round_trip_within_1e6_px(image):
    back = []
    for box in image.boxes:
        row = box_to_yolo_row(box, image.width, image.height, CLASS_NAMES.index(box.label))
        parsed, problem = yolo_row_to_box(row, image.width, image.height, CLASS_NAMES, "t")
        assert problem is None
        back.append(parsed)
    assert boxes_close(back, image.boxes, 1e-6)


def test_golden_files(tmp_path):
    write_with("yolo", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES)
    golden = GOLDEN_DIR / "yolo"
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(golden) for p in golden.rglob("*") if p.is_file())
    for rel in written:
        assert (tmp_path / rel).read_text() == (golden / rel).read_text(), rel
    doc = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert "path" not in doc  # relative to the file: the folder can move
    assert doc["names"] == {0: "can", 1: "glass & jar", 2: "<film>"} and doc["nc"] == 3


def test_written_dataset_reads_back(tmp_path):
    write_with("yolo", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    back = by_name(read_dataset(tmp_path))
    for original in GOLDEN_IMAGES:
        read = back[original.file_name]
        assert read.problems == ()  # empty frames have an (empty) label file
        assert (strip(read).width, read.height, read.split) == (original.width, original.height, original.split)
        assert boxes_close(read.boxes, original.boxes, 1e-6)


def test_roboflow_style_yaml_polygons_and_missing_label_files(tmp_path):
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['can', 'glass']\n")
    write_jpeg(tmp_path / "train" / "images" / "a.jpg", 100, 50)
    write_jpeg(tmp_path / "train" / "images" / "b.jpg", 100, 50)
    write_jpeg(tmp_path / "valid" / "images" / "c.jpg", 100, 50)
    (tmp_path / "train" / "labels").mkdir()
    (tmp_path / "train" / "labels" / "a.txt").write_text("1 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.1 0.1\n0 x y\n")
    images = by_name(read_dataset(tmp_path))
    a, b, c = images["a.jpg"], images["b.jpg"], images["c.jpg"]
    assert a.split == "train" and c.split == "val"
    assert [box.label for box in a.boxes] == ["glass", "can"]
    assert a.boxes[0].xyxy_px == pytest.approx((10, 10, 50, 30))  # polygon -> enclosing box
    assert [p.kind for p in a.problems] == [POLYGON_AS_BOX, UNKNOWN_CLASS, MALFORMED]
    assert a.problems[1].where.endswith("a.txt:4")
    assert b.boxes == () and [p.kind for p in b.problems] == [NO_LABEL_FILE]


def test_missing_yaml_or_split_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no data.yaml"):
        list(read_dataset(tmp_path))
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: ['can']\n")
    with pytest.raises(InputError, match="images/train"):
        list(read_dataset(tmp_path))


def test_labels_path_rule():
    assert labels_path_for(Path("/d/images/train/x.y.jpg")) == Path("/d/labels/train/x.y.txt")
    assert labels_path_for(Path("/images/d/images/x.jpg")) == Path("/images/d/labels/x.txt")
