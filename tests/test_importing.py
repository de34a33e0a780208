"""import-labels: existing COCO/YOLO/VOC datasets -> catalog frames + annotations."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curation.catalog import Annotation, Frame, Quarantine
from curation.errors import InputError
from curation.exporting import export_dataset
from curation.importing import import_labels
from exporters import EXPORTERS
from exporters.coco import read_dataset as read_coco_dataset
from exporters.types import boxes_close
from tests.support.exports import GOLDEN_CLASSES, GOLDEN_IMAGES, write_with

TRASHNET = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "trashnet-west-416"


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _counts(catalog):
    with catalog.session() as session:
        return (session.scalar(select(func.count()).select_from(Frame)),
                session.scalar(select(func.count()).select_from(Annotation)),
                session.scalar(select(func.count()).select_from(Annotation).where(Annotation.is_current.is_(True))))


@pytest.mark.slow
@pytest.mark.skipif(not TRASHNET.is_dir(), reason="needs ../shared/data/trashnet-west-416")
def test_trashnet_yolo_to_catalog_to_coco_and_back_is_identical(sqlite_catalog, settings_env, tmp_path):
    """YOLO -> catalog -> COCO: every frame's boxes equal the original label file's within 1e-6 px.
    Then COCO -> a second catalog -> YOLO: the label rows equal the original rows within 1e-9."""
    classes = str(TRASHNET / "data.yaml")
    summary = import_labels(sqlite_catalog, settings_env, TRASHNET, "yolo", name="trashnet", workers=1)
    assert (summary.images, summary.new_frames, summary.annotations) == (2613, 2600, 2613)
    # the 13 "<name> - Copy.jpg" files are byte-identical to labeled images but have no label file
    assert summary.conflicting_duplicates == summary.duplicate_images == 13 and summary.current == 2600
    assert summary.existing_frames == 0
    assert summary.problems["polygon_as_box"] == 1 and summary.dropped == 0

    expected = {}  # content hash -> boxes of the labeled copy
    for image in EXPORTERS.get("yolo").read_dataset(TRASHNET):
        has_labels = not any(p.kind == "no_label_file" for p in image.problems)
        key = _sha256(image.image_path)
        if has_labels or key not in expected:
            expected[key] = image.boxes

    v1 = export_dataset(sqlite_catalog, settings_env, name="v1", formats=["coco"], classes=classes)
    assert (v1["n_frames"], v1["n_boxes"], v1["dropped_frames"]) == (2600, sum(len(b) for b in expected.values()), 0)
    seen = 0
    for image in read_coco_dataset(Path(v1["path"])):
        assert boxes_close(image.boxes, expected[_sha256(image.image_path)], 1e-6), image.file_name
        seen += 1
    assert seen == len(expected) == 2600

    # ... and back: the COCO export imported into a fresh catalog, exported as YOLO
    from curation.catalog import Catalog

    second = Catalog(f"sqlite:///{tmp_path / 'second.sqlite'}")
    try:
        back = import_labels(second, settings_env, Path(v1["path"]), "coco", name="v1", workers=1)
        assert (back.new_frames, back.current, back.dropped) == (2600, 2600, 0)
        settings = settings_env.with_overrides(export__dir=str(tmp_path / "second"))
        v1_yolo = export_dataset(second, settings, name="v1-yolo", formats=["yolo"], classes=classes)
    finally:
        second.dispose()
    original_rows = {}
    for label in TRASHNET.glob("*/labels/*.txt"):
        image = next(label.parent.parent.glob(f"images/{label.stem}.*"))
        original_rows[_sha256(image)] = [[float(v) for v in row.split()] for row in label.read_text().splitlines() if row.strip()]
    compared = 0
    for row in map(json.loads, (Path(v1_yolo["path"]) / "frames.jsonl").read_text().splitlines()):
        rows = original_rows.get(row["content_hash"])
        if rows is None or any(len(r) != 5 for r in rows):
            continue  # the polygon row became a box; checked above
        label_file = Path(v1_yolo["path"]) / (row["file"].replace("images/", "labels/", 1).rsplit(".", 1)[0] + ".txt")
        written = [[float(v) for v in line.split()] for line in label_file.read_text().splitlines()]
        assert len(written) == len(rows)
        for got, want in zip(sorted(written), sorted(rows)):
            assert got == pytest.approx(want, abs=1e-9), (row["file"], got, want)
        compared += 1
    assert compared == 2600 - 1


def test_synthetic_coco_import_keeps_site_camera_sequence(sqlite_catalog, settings_env, synth_small):
    summary = import_labels(sqlite_catalog, settings_env, synth_small / "annotations.json", "coco", name="synth")
    coco = json.loads((synth_small / "annotations.json").read_text())
    assert summary.new_frames == len(coco["images"]) == summary.current
    assert summary.boxes == len(coco["annotations"])
    with sqlite_catalog.session() as session:
        frame = session.scalar(select(Frame).order_by(Frame.id).limit(1))
        record = coco["images"][0]
        assert (frame.site, frame.camera, frame.sequence) == (record["site"], record["camera"], record["sequence"])
        assert frame.captured_at is not None


def test_reimport_is_a_no_op_and_labels_never_override_current(sqlite_catalog, settings_env, tmp_path):
    write_with("coco", tmp_path / "ds", GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    first = import_labels(sqlite_catalog, settings_env, tmp_path / "ds", "coco", name="golden")
    assert (first.new_frames, first.annotations, first.current) == (3, 3, 3)
    again = import_labels(sqlite_catalog, settings_env, tmp_path / "ds", "coco", name="golden")
    assert (again.already_imported, again.annotations, again.new_frames) == (3, 0, 0)
    other = import_labels(sqlite_catalog, settings_env, tmp_path / "ds", "coco", name="golden2")
    assert (other.existing_frames, other.annotations, other.current, other.not_current) == (3, 3, 0, 3)
    assert _counts(sqlite_catalog) == (3, 6, 3)


def test_voc_and_yolo_imports_agree(sqlite_catalog, settings_env, tmp_path):
    write_with("voc", tmp_path / "ds", GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    write_with("yolo", tmp_path / "ds", GOLDEN_IMAGES, GOLDEN_CLASSES)
    voc = import_labels(sqlite_catalog, settings_env, tmp_path / "ds", "voc", name="voc")
    yolo = import_labels(sqlite_catalog, settings_env, tmp_path / "ds", "yolo", name="yolo")
    assert voc.new_frames == 3 and yolo.existing_frames == 3
    with sqlite_catalog.session() as session:
        rows = session.execute(select(Annotation.frame_id, Annotation.source, Annotation.boxes)).all()
    by_frame: dict = {}
    for frame_id, source, boxes in rows:
        by_frame.setdefault(frame_id, {})[source] = boxes
    from exporters.types import Box

    for sources in by_frame.values():
        voc_boxes = [Box.from_catalog(b) for b in sources["import:voc"]]
        yolo_boxes = [Box.from_catalog(b) for b in sources["import:yolo"]]
        assert boxes_close(voc_boxes, yolo_boxes, 1e-6)


def test_bad_labels_drop_or_fail(sqlite_catalog, settings_env, tmp_path):
    ds = tmp_path / "ds"
    write_with("coco", ds, GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    data = json.loads((ds / "coco" / "train.json").read_text())
    data["annotations"][0]["bbox"] = [50, 3, 30, 20]  # 16 px past the right edge of a 64 px image
    (ds / "coco" / "train.json").write_text(json.dumps(data))
    (ds / "images" / "val" / "00000002-belt_b.jpg").unlink()  # missing image
    with pytest.raises(InputError, match="nothing imported") as info:
        import_labels(sqlite_catalog, settings_env, ds, "coco", name="bad", on_bad="fail")
    assert "box_outside" in str(info.value) and "missing" in str(info.value)
    assert _counts(sqlite_catalog) == (0, 0, 0)
    summary = import_labels(sqlite_catalog, settings_env, ds, "coco", name="bad", on_bad="drop")
    assert summary.dropped == 2 and summary.problems["box_outside"] == 1 and summary.problems["missing_image"] == 1
    # the frame with the bad box is in the catalog, unlabeled (so it can be selected for relabeling)
    assert _counts(sqlite_catalog) == (2, 1, 1)


def test_broken_image_is_quarantined(sqlite_catalog, settings_env, tmp_path):
    ds = tmp_path / "ds"
    write_with("coco", ds, GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    image = ds / "images" / "train" / "00000001-belt_a.jpg"
    image.write_bytes(image.read_bytes()[:200])
    summary = import_labels(sqlite_catalog, settings_env, ds, "coco", name="q")
    assert summary.quarantined == 1 and summary.new_frames == 2
    with sqlite_catalog.session() as session:
        assert session.scalar(select(Quarantine.reason)) == "truncated"


def test_bad_arguments_are_named(sqlite_catalog, settings_env, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        import_labels(sqlite_catalog, settings_env, tmp_path / "nope", "coco")
    with pytest.raises(InputError, match="--name"):
        import_labels(sqlite_catalog, settings_env, tmp_path, "coco", name="x" * 40)
    from curation.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="coco, voc, yolo"):
        import_labels(sqlite_catalog, settings_env, tmp_path, "kitti")
    shutil.rmtree(tmp_path / "state", ignore_errors=True)
