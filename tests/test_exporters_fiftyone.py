"""FiftyOne: Detections round trips, and FiftyOne's own importers reading every export format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from curation.exporting import export_dataset
from curation.importing import import_labels
from exporters.types import Box, boxes_close
from exporters.versions import iter_frames
from tests.support.boxes import labeled_images

pytestmark = pytest.mark.fiftyone


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labeled_images())
def test_detections_round_trip_within_1e6_px(fiftyone_env, image):
    from exporters.fiftyone import boxes_to_fo_detections, fo_detections_to_boxes

    detections = boxes_to_fo_detections(image.boxes, image.width, image.height)
    assert boxes_close(fo_detections_to_boxes(detections, image.width, image.height), image.boxes, 1e-6)


def test_confidence_is_kept(fiftyone_env):
    from exporters.fiftyone import boxes_to_fo_detections, fo_detections_to_boxes

    detections = boxes_to_fo_detections([Box((10, 20, 30, 40), "can", 0.625)], 200, 100)
    assert detections.detections[0].bounding_box == [0.05, 0.2, 0.15, 0.4]
    assert fo_detections_to_boxes(detections, 200, 100)[0].score == 0.625


@pytest.fixture
def exported_version(sqlite_catalog, settings_env, synth_small):
    import_labels(sqlite_catalog, settings_env, synth_small / "annotations.json", "coco", name="synth")
    result = export_dataset(sqlite_catalog, settings_env, name="v1", formats=["coco", "yolo", "voc"])
    return Path(result["path"])


def _ours(version: Path) -> dict[str, dict]:
    """file name -> {split, boxes (from our COCO file, exact)}."""
    out = {}
    for row in iter_frames(version):
        out[Path(row["file"]).name] = {"split": row["split"], "n": row["boxes"]}
    for split in ("train", "val", "test"):
        path = version / "coco" / f"{split}.json"
        if path.exists():
            from exporters.coco import read_coco

            for image in read_coco(path):
                out[image.file_name]["image"] = image
    return out


def _key(box: Box):
    return (box.label, box.xywh_px)


def test_fiftyone_importers_read_every_format_with_identical_boxes(fiftyone_env, exported_version):
    import fiftyone as fo

    from exporters.fiftyone import fo_detections_to_boxes

    version = exported_version
    ours = _ours(version)
    splits = sorted({v["split"] for v in ours.values()})
    assert len(splits) >= 2
    loaded = Counter()
    for split in splits:
        readers = {
            "coco": dict(dataset_type=fo.types.COCODetectionDataset, data_path=str(version / "images" / split),
                         labels_path=str(version / "coco" / f"{split}.json"), label_types="detections"),
            "yolo": dict(dataset_type=fo.types.YOLOv5Dataset, dataset_dir=str(version), yaml_path=str(version / "data.yaml"), split=split),
            "voc": dict(dataset_type=fo.types.VOCDetectionDataset, data_path=str(version / "images" / split),
                        labels_path=str(version / "voc" / split)),
        }
        for fmt, kwargs in readers.items():
            dataset = fo.Dataset.from_dir(label_field="gt", **kwargs)
            names = {}
            for sample in dataset.iter_samples():
                name = Path(sample.filepath).name
                mine = ours[name]
                assert mine["split"] == split
                detections = sample["gt"].detections if sample["gt"] is not None else []
                assert len(detections) == mine["n"], (fmt, name)
                image = mine["image"]
                boxes = fo_detections_to_boxes(detections, image.width, image.height)
                got, want = sorted(boxes, key=_key), sorted(image.boxes, key=_key)
                if fmt == "voc":  # FiftyOne's VOC reader truncates coordinates to whole pixels
                    assert [b.label for b in got] == [b.label for b in want], name
                    for g, w in zip(got, want):
                        assert all(abs(u - v) <= 1.0 for u, v in zip(g.xywh_px, w.xywh_px)), (name, g, w)
                else:
                    assert boxes_close(got, want, 1e-6), (fmt, name)
                names[name] = True
            assert len(names) == sum(1 for v in ours.values() if v["split"] == split), (fmt, split)
            loaded[fmt] += len(names)
            dataset.delete()
    assert loaded == {"coco": 120, "yolo": 120, "voc": 120}


def test_version_loads_as_fiftyone_dataset(fiftyone_env, exported_version):
    from exporters.fiftyone import dataset_to_images, version_to_dataset

    dataset = version_to_dataset(exported_version, "beltcurate-v1-test", overwrite=True)
    try:
        assert len(dataset) == 120
        frames = {row["frame_id"]: row for row in iter_frames(exported_version)}
        back = list(dataset_to_images(dataset))
        assert {image.frame_id for image in back} == set(frames)
        for image in back:
            assert frames[image.frame_id]["boxes"] == len(image.boxes)
            assert image.split == frames[image.frame_id]["split"]
        json.dumps(dataset.count_values("ground_truth.detections.label"))
    finally:
        dataset.delete()
