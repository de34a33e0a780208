"""Versioned exports: manifest, checksums, grouped splits, diff vs parent, atomicity, streaming."""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select, update

from curation.catalog import Annotation, DatasetVersion, Frame
from curation.errors import ExportError, InputError
from curation.exporting import export_dataset
from curation.importing import import_labels
from exporters.types import Box, LabeledImage
from exporters.versions import TEMP_PREFIX, VersionOptions, iter_frames, read_manifest, write_version
from tests.support.exports import write_jpeg


@pytest.fixture
def synth_catalog(catalog, settings_env, synth_small):
    summary = import_labels(catalog, settings_env, synth_small / "annotations.json", "coco", name="synth")
    assert summary.current == 120
    return catalog, settings_env


def _verify_checksums(version: Path) -> int:
    n = 0
    for line in (version / "SHA256SUMS").read_text().splitlines():
        sha, rel = line.split("  ", 1)
        assert hashlib.sha256((version / rel).read_bytes()).hexdigest() == sha, rel
        n += 1
    return n


def test_version_folder_manifest_checksums_and_grouped_splits(synth_catalog, synth_small):
    catalog, settings = synth_catalog
    result = export_dataset(catalog, settings, name="v1", formats=["coco", "yolo", "voc"])
    version = Path(result["path"])
    manifest = read_manifest(version)
    assert manifest["name"] == "v1" and manifest["parent"] is None and manifest["formats"] == ["coco", "yolo", "voc"]
    assert manifest["counts"]["frames"] == 120 and manifest["tool"]["version"]
    assert manifest["class_map"][-1] == "battery"
    assert sum(c["frames"] for c in manifest["splits"]["counts"].values()) == 120
    assert manifest["class_counts"]["total"] == {
        name: sum(manifest["class_counts"][s][name] for s in ("train", "val", "test")) for name in manifest["class_map"]
    }
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((version / name).read_bytes()).hexdigest() == sha
    assert hashlib.sha256((version / "manifest.json").read_bytes()).hexdigest() == result["manifest_sha256"]
    # every image and label file is listed and matches: 120 images + 120 yolo + 120 voc + coco files + data.yaml
    n_coco = len(list((version / "coco").glob("*.json")))
    assert _verify_checksums(version) == 120 * 3 + n_coco + 1
    rows = list(iter_frames(version))
    assert [r["frame_id"] for r in rows] == sorted(r["frame_id"] for r in rows)
    with catalog.session() as session:
        frames = {f.id: f for f in session.scalars(select(Frame))}
        recorded = session.scalar(select(DatasetVersion).where(DatasetVersion.name == "v1"))
        assert (recorded.n_frames, recorded.manifest_sha256) == (120, result["manifest_sha256"])
    splits_of_sequence = defaultdict(set)
    for row in rows:
        frame = frames[row["frame_id"]]
        assert row["content_hash"] == frame.content_hash
        assert os.path.realpath(version / row["file"]) == os.path.realpath(frame.path)
        splits_of_sequence[(frame.site, frame.camera, frame.sequence)].add(row["split"])
    assert len(splits_of_sequence) > 3
    assert all(len(s) == 1 for s in splits_of_sequence.values()), "a belt sequence straddles splits"
    coco = json.loads((version / "coco" / "train.json").read_text())
    assert {im["id"] for im in coco["images"]} <= set(frames)  # COCO image ids are catalog frame ids


def test_same_labels_same_version_content(synth_catalog):
    catalog, settings = synth_catalog
    a = Path(export_dataset(catalog, settings, name="a", formats=["coco", "yolo"])["path"])
    b = Path(export_dataset(catalog, settings, name="b", formats=["coco", "yolo"])["path"])
    assert (a / "SHA256SUMS").read_text() == (b / "SHA256SUMS").read_text()
    assert (a / "frames.jsonl").read_text() == (b / "frames.jsonl").read_text()


def test_diff_against_parent_and_sticky_splits(synth_catalog):
    catalog, settings = synth_catalog
    v1 = export_dataset(catalog, settings, name="v1", formats=["yolo"])
    with catalog.session() as session:
        ids = sorted(session.scalars(select(Frame.id)))
        relabeled, removed = ids[5], ids[6]
        ann = session.scalar(select(Annotation).where(Annotation.frame_id == relabeled, Annotation.is_current.is_(True)))
        ann.is_current = False
        session.add(Annotation(frame_id=relabeled, source="labelstudio", source_id="ls-1",
                               boxes=[Box((1, 2, 30, 40), "battery").to_catalog()], is_current=True, status="accepted"))
        session.execute(update(Annotation).where(Annotation.frame_id == removed).values(status="deleted"))
    v2 = export_dataset(catalog, settings, name="v2", parent="v1", formats=["yolo"])
    assert v2["diff"] == {"added": 0, "removed": 1, "relabeled": 1, "unchanged": 118}
    changes = [json.loads(line) for line in (Path(v2["path"]) / "diff.jsonl").read_text().splitlines()]
    assert {(c["change"], c["frame_id"]) for c in changes} == {("removed", removed), ("relabeled", relabeled)}
    manifest = read_manifest(Path(v2["path"]))
    assert manifest["parent"]["name"] == "v1" and manifest["diff"]["relabeled"] == 1
    split_v1 = {r["frame_id"]: r["split"] for r in iter_frames(Path(v1["path"]))}
    split_v2 = {r["frame_id"]: r["split"] for r in iter_frames(Path(v2["path"]))}
    assert all(split_v1[f] == s for f, s in split_v2.items())
    with pytest.raises(InputError, match="known versions: v1, v2"):
        export_dataset(catalog, settings, name="v3", parent="nope")


def test_versions_are_immutable(synth_catalog):
    catalog, settings = synth_catalog
    export_dataset(catalog, settings, name="v1", formats=["coco"])
    with pytest.raises(ExportError, match="immutable"):
        export_dataset(catalog, settings, name="v1", formats=["coco"])


def test_failure_leaves_no_partial_version(synth_catalog, monkeypatch):
    catalog, settings = synth_catalog
    from exporters import yolo

    calls = {"n": 0}
    original = yolo.YoloWriter.add

    def failing_add(self, image):
        calls["n"] += 1
        if calls["n"] == 50:
            raise OSError(28, "No space left on device")
        return original(self, image)

    monkeypatch.setattr(yolo.YoloWriter, "add", failing_add)
    with pytest.raises(OSError, match="No space"):
        export_dataset(catalog, settings, name="v1", formats=["coco", "yolo"])
    root = settings.state_dir / "datasets"
    assert list(root.iterdir()) == []
    with catalog.session() as session:
        assert session.scalar(select(DatasetVersion)) is None


def test_missing_image_drops_the_frame_or_fails(synth_catalog, tmp_path):
    catalog, settings = synth_catalog
    with catalog.session() as session:
        frame = session.scalar(select(Frame).order_by(Frame.id).limit(1))
        frame.path = str(tmp_path / "gone.jpg")
        frame_id = frame.id
    with pytest.raises(ExportError, match="gone.jpg.*missing_image"):
        export_dataset(catalog, settings, name="v1", formats=["coco"], on_bad="fail")
    assert not (settings.state_dir / "datasets" / "v1").exists()
    result = export_dataset(catalog, settings, name="v1", formats=["coco"], on_bad="drop")
    assert result["n_frames"] == 119 and result["dropped_frames"] == 1 and result["problems"]["missing_image"] == 1
    problems = [json.loads(line) for line in (Path(result["path"]) / "problems.jsonl").read_text().splitlines()]
    assert [(p["frame_id"], p["kind"]) for p in problems if p["kind"] != "empty_frame"] == [(frame_id, "missing_image")]


def test_a_bad_box_drops_its_whole_frame(synth_catalog):
    catalog, settings = synth_catalog
    with catalog.session() as session:
        ann = session.scalar(select(Annotation).where(Annotation.is_current.is_(True)).order_by(Annotation.id).limit(1))
        ann.boxes = ann.boxes + [Box((300, 200, 100, 100), "paper").to_catalog(), Box((1, 1, 5, 5), "sofa").to_catalog()]
    result = export_dataset(catalog, settings, name="v1", formats=["coco"])
    assert result["dropped_frames"] == 1 and result["problems"]["box_outside"] == 1
    assert result["unknown_classes"] == {"sofa": 1}


def _tiny_source(tmp_path, n_frames: int, *, empty_every: int = 0):
    image = tmp_path / "one.jpg"
    if not image.exists():
        write_jpeg(image, 64, 48)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()

    def source():
        for i in range(1, n_frames + 1):
            boxes = () if empty_every and i % empty_every == 0 else tuple(
                Box((float(k), 2.0, 10.0, 8.0), ("can", "glass")[k % 2]) for k in range(10))
            yield LabeledImage(f"{i:08d}-f.jpg", 64, 48, boxes, image_path=str(image), frame_id=i,
                               content_hash=digest, group=f"seq{i // 20}")
    return source


@pytest.mark.parametrize("mode", ["symlink", "hardlink", "copy"])
def test_image_modes(tmp_path, mode):
    options = VersionOptions(name="v", formats=["yolo"], class_names=["can", "glass"], images=mode)
    result = write_version(_tiny_source(tmp_path, 5), tmp_path / "out", options)
    placed = next(Path(result.path, "images").rglob("*.jpg"))
    assert placed.is_symlink() == (mode == "symlink")
    assert (os.stat(placed).st_ino == os.stat(tmp_path / "one.jpg").st_ino) == (mode in ("symlink", "hardlink"))
    _verify_checksums(Path(result.path))


def test_empty_frames_keep_drop_fail(tmp_path):
    def run(on_empty, name):
        options = VersionOptions(name=name, formats=["coco"], class_names=["can", "glass"], on_empty=on_empty)
        return write_version(_tiny_source(tmp_path, 10, empty_every=5), tmp_path / "out", options)

    kept = run("keep", "keep")
    assert (kept.n_frames, kept.empty_frames, kept.problems) == (10, 2, {"empty_frame": 2})
    dropped = run("drop", "drop")
    assert (dropped.n_frames, dropped.dropped_frames) == (8, 2)
    with pytest.raises(ExportError, match="no boxes"):
        run("fail", "fail")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["drop", "keep"]


def test_stale_temp_of_a_dead_export_is_removed(tmp_path):
    out = tmp_path / "out"
    (out / f"{TEMP_PREFIX}v0-999999999-abcd1234").mkdir(parents=True)
    (out / f"{TEMP_PREFIX}v0-{os.getpid()}-abcd1234").mkdir()  # a live process's export is left alone
    write_version(_tiny_source(tmp_path, 3), out, VersionOptions(name="v", formats=["coco"], class_names=["can", "glass"]))
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{TEMP_PREFIX}v0-{os.getpid()}-abcd1234", "v"])


def test_memory_does_not_grow_with_frames(tmp_path):
    import tracemalloc

    def peak(n_frames: int, name: str) -> int:
        options = VersionOptions(name=name, formats=["coco", "yolo"], class_names=["can", "glass"])
        tracemalloc.start()
        write_version(_tiny_source(tmp_path, n_frames), tmp_path / "out", options)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(20, "warm-up")  # first use imports yaml etc.
    small, large = peak(500, "small"), peak(4000, "large")
    # 8x the frames (and groups): the peak may grow by the per-group split table only
    assert large < small * 1.25 + 256 * 1024, (small, large)


def test_bad_options_are_named(tmp_path):
    base = dict(formats=["coco"], class_names=["can"])
    for options, message in [
        (VersionOptions(name="v", images="teleport", **base), "symlink, hardlink, copy"),
        (VersionOptions(name="../x", **base), "plain folder name"),
        (VersionOptions(name="v", fractions=(0.5, 0.6, 0.0), **base), "summing to 1"),
        (VersionOptions(name="v", formats=["kitti"], class_names=["can"]), "coco, voc, yolo"),
    ]:
        with pytest.raises(Exception, match=message):
            write_version(_tiny_source(tmp_path, 2), tmp_path / "out", options)
