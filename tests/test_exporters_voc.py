"""Pascal VOC: round trips within 1e-6 px, golden files, the layouts readers accept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from curation.errors import InputError
from exporters.types import MALFORMED, boxes_close
from exporters.voc import image_to_voc_xml, read_dataset, voc_xml_to_image
from tests.support.boxes import labeled_images
from tests.support.exports import GOLDEN_CLASSES, GOLDEN_DIR, GOLDEN_IMAGES, by_name, write_jpeg, write_with


@settings(max_examples=300, deadline=None)
@given(labeled_images())
def test_xml_round_trip_within_1e6_px(image):
    back = voc_xml_to_image(image_to_voc_xml(image), "t")
    assert (back.file_name, back.width, back.height, back.problems) == (image.file_name, image.width, image.height, ())
    assert boxes_close(back.boxes, image.boxes, 1e-6)


def test_golden_files(tmp_path):
    write_with("voc", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES)
    golden = GOLDEN_DIR / "voc"
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(golden) for p in golden.rglob("*") if p.is_file())
    for rel in written:
        assert (tmp_path / rel).read_text() == (golden / rel).read_text(), rel


def test_written_dataset_reads_back(tmp_path):
    write_with("voc", tmp_path, GOLDEN_IMAGES, GOLDEN_CLASSES, with_images=True)
    back = by_name(read_dataset(tmp_path))
    for original in GOLDEN_IMAGES:
        read = back[original.file_name]
        assert read.split == original.split and read.image_path.endswith(f"images/{original.split}/{original.file_name}")
        assert boxes_close(read.boxes, original.boxes, 1e-6)


def test_devkit_layout_with_image_sets(tmp_path):
    for stem, split in (("a", "train"), ("b", "val")):
        image = next(im for im in GOLDEN_IMAGES if im.boxes)
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{stem}.xml").write_text(image_to_voc_xml(image.__class__(f"{stem}.jpg", 64, 48, image.boxes)))
        write_jpeg(tmp_path / "JPEGImages" / f"{stem}.jpg", 64, 48)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    images = by_name(read_dataset(tmp_path))
    assert {name: im.split for name, im in images.items()} == {"a.jpg": "train", "b.jpg": "val"}
    assert images["a.jpg"].image_path == str(tmp_path / "JPEGImages" / "a.jpg")


def test_bad_xml_becomes_problems(tmp_path):
    assert voc_xml_to_image("<annotation><size>", "x.xml").problems[0].kind == MALFORMED
    text = ("<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height></size>"
            "<object><name>can</name><bndbox><xmin>1</xmin></bndbox></object>"
            "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>")
    image = voc_xml_to_image(text, "x.xml")
    assert image.boxes == () and [p.kind for p in image.problems] == [MALFORMED, MALFORMED]
    with pytest.raises(InputError, match="no Pascal VOC"):
        list(read_dataset(tmp_path))
