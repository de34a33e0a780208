"""COCO: exact round trips, golden files, and pycocotools as the reference reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation.errors import InputError
from exporters.coco import read_coco, read_dataset
from exporters.types import MALFORMED, UNSUPPORTED, LabeledImage, boxes_close
from tests.support.boxes import CLASS_NAMES, labeled_images
from tests.support.exports import GOLDEN_CLASSES, GOLDEN_DIR, GOLDEN_IMAGES, by_name, write_with


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(labeled_images(), min_size=1, max_size=5), st.sampled_from(["train", "val", "test"]))
def test_round_trip_is_exact(tmp_path_factory, images, split):
    root = tmp_path_factory.mktemp("coco")
    images = [LabeledImage(f"{i:04d}.jpg", im.width, im.height, im.boxes, split=split) for i, im in enumerate(images)]
    write_with("coco", root, images, CLASS_NAMES)
    back = list(read_coco(root / "coco" / f"{split}.json"))
    assert [(b.file_name, b.width, b.height) for b in back] == [(i.file_name, i.width, i.height) for i in images]
    for original, read in zip(images, back):
        assert read.problems == ()
        assert boxes_close(read.boxes, original.boxes, 0.0)  # repr floats: bit-exact


def test_golden_files(tmp_path):
    digests = write_with("coco", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES)
    for split in ("train", "val"):
        assert (tmp_path / "coco" / f"{split}.json").read_text() == (GOLDEN_DIR / "coco" / "coco" / f"{split}.json").read_text()
    assert sorted(path for path, _ in digests) == ["coco/train.json", "coco/val.json"]
    assert not (tmp_path / "coco" / ".parts").exists()


def test_pycocotools_reads_it_and_ground_truth_scores_ap_1(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    write_with("coco", tmp_path, [im for im in GOLDEN_IMAGES if im.split == "train"], GOLDEN_CLASSES)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "coco" / "train.json"))
        assert len(gt.getImgIds()) == 2 and len(gt.getAnnIds()) == 3
        assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == GOLDEN_CLASSES
        detections = [{**a, "score": 1.0} for a in gt.loadAnns(gt.getAnnIds())]
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert evaluator.stats[1] == pytest.approx(1.0)  # AP@.5


def test_reader_reports_crowds_unknown_categories_and_orphans(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 5, "name": "can"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2]},
            {"id": 4, "image_id": 1, "category_id": 5, "bbox": None},
            {"id": 5, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2, 2]},
        ],
    }))
    image, orphan = list(read_coco(path))
    assert [b.label for b in image.boxes] == ["can"]
    assert [p.kind for p in image.problems] == [UNSUPPORTED, MALFORMED, MALFORMED]
    assert "image_id 7" in orphan.problems[0].detail


def test_not_coco_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not a COCO detection file"):
        list(read_coco(tmp_path / "x.json"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no COCO JSON"):
        list(read_dataset(empty))


def test_dataset_reader_finds_version_layout(tmp_path):
    write_with("coco", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    images = by_name(read_dataset(tmp_path))
    assert set(images) == {im.file_name for im in GOLDEN_IMAGES}
    a = images["00000001-belt_a.jpg"]
    assert a.split == "train" and Path(a.image_path) == tmp_path / "images" / "train" / "00000001-belt_a.jpg"
