"""Ingest: every quarantine reason from real broken files, idempotency, hash dedupe, EXIF, time."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from curation.catalog import Frame, Quarantine
from curation.ingest import IngestOptions, ingest, timestamp_from_path

OPTIONS = IngestOptions(site="west", line="L1", camera="cam1", filename_pattern=r"(?P<ts>\d{8}T\d{6}(?:\.\d+)?)", workers=1)


def _jpeg_bytes(seed: int, size=(64, 48), exif=None) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


@pytest.fixture
def belt_dir(tmp_path) -> Path:
    root = tmp_path / "belt"
    (root / "seq1").mkdir(parents=True)
    (root / "seq1" / "f_20261102T060000.100.jpg").write_bytes(_jpeg_bytes(1))
    (root / "seq1" / "f_20261102T060000.200.jpg").write_bytes(_jpeg_bytes(2))
    Image.new("RGB", (40, 30), (10, 200, 30)).save(root / "seq1" / "green.png")
    Image.new("RGB", (40, 30), (200, 10, 30)).save(root / "seq1" / "red.webp", "WEBP")
    (root / "notes.txt").write_text("not a frame, not scanned")
    return root


@pytest.fixture
def broken_dir(tmp_path) -> Path:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "empty.jpg").write_bytes(b"")
    full = _jpeg_bytes(3, size=(256, 192))
    (root / "cut.jpg").write_bytes(full[: len(full) // 2])
    (root / "text.png").write_text("this is not an image\n" * 20)
    # 20000 x 20000 one-bit PNG: a few kB on disk, 400 M pixels when decoded
    Image.new("1", (20000, 20000)).save(root / "bomb.png", optimize=True)
    (root / "dangling.jpg").symlink_to(root / "does-not-exist.jpg")
    return root


def test_ingest_counts_and_metadata(sqlite_catalog, belt_dir):
    summary = ingest(sqlite_catalog, belt_dir, OPTIONS)
    assert (summary.scanned, summary.new, summary.quarantined, summary.skipped_other) == (4, 4, 0, 1)
    with sqlite_catalog.session() as session:
        frames = {Path(f.path).name: f for f in session.scalars(select(Frame))}
    first = frames["f_20261102T060000.100.jpg"]
    assert (first.width, first.height, first.format, first.site, first.camera) == (64, 48, "jpeg", "west", "cam1")
    assert first.captured_at == dt.datetime(2026, 11, 2, 6, 0, 0, 100000)
    assert first.sequence == "seq1"
    assert frames["red.webp"].format == "webp" and frames["green.png"].format == "png"


def test_reingest_is_a_noop(sqlite_catalog, belt_dir):
    ingest(sqlite_catalog, belt_dir, OPTIONS)
    again = ingest(sqlite_catalog, belt_dir, OPTIONS)
    assert (again.new, again.duplicate, again.already_known) == (0, 0, 4)
    with sqlite_catalog.session() as session:
        assert len(session.scalars(select(Frame)).all()) == 4


def test_exact_duplicates_are_stored_once(sqlite_catalog, belt_dir):
    copy_dir = belt_dir / "copies"
    copy_dir.mkdir()
    shutil.copy(belt_dir / "seq1" / "f_20261102T060000.100.jpg", copy_dir / "same-bytes.jpg")
    summary = ingest(sqlite_catalog, belt_dir, OPTIONS)
    assert (summary.new, summary.duplicate) == (4, 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_quarantine_reason(sqlite_catalog, broken_dir, belt_dir, workers):
    for path in (belt_dir / "seq1").iterdir():  # good files in the same run: the run goes on
        shutil.copy(path, broken_dir / path.name)
    for i in range(70):  # enough files to use the process pool
        (broken_dir / f"more_{i}.jpg").write_bytes(_jpeg_bytes(100 + i, size=(16, 16)))
    options = IngestOptions(**{**OPTIONS.__dict__, "workers": workers})
    summary = ingest(sqlite_catalog, broken_dir, options)
    assert summary.new == 74
    assert summary.quarantine_reasons == {"zero_byte": 1, "truncated": 1, "not_image": 1, "huge": 1, "unreadable": 1}
    with sqlite_catalog.session() as session:
        reasons = {Path(q.path).name: (q.reason, q.detail) for q in session.scalars(select(Quarantine))}
    assert reasons["empty.jpg"][0] == "zero_byte"
    assert reasons["cut.jpg"][0] == "truncated"
    assert reasons["text.png"][0] == "not_image"
    assert reasons["bomb.png"][0] == "huge" and "400000000" in reasons["bomb.png"][1]
    assert reasons["dangling.jpg"][0] == "unreadable"
    # quarantined files are known: a rerun neither reads them again nor adds rows
    again = ingest(sqlite_catalog, broken_dir, options)
    assert again.quarantined == 0 and again.already_known == summary.scanned


def test_huge_pixel_count_under_pil_limit(sqlite_catalog, tmp_path):
    (tmp_path / "big").mkdir()
    Image.new("1", (3000, 2000)).save(tmp_path / "big" / "wide.png")
    options = IngestOptions(**{**OPTIONS.__dict__, "max_pixels": 5_000_000})
    summary = ingest(sqlite_catalog, tmp_path / "big", options)
    assert summary.quarantine_reasons == {"huge": 1}


def test_huge_file_size_limit(sqlite_catalog, belt_dir):
    options = IngestOptions(**{**OPTIONS.__dict__, "max_bytes": 1000})  # the noisy JPEGs are ~4 kB
    summary = ingest(sqlite_catalog, belt_dir, options)
    assert summary.quarantine_reasons == {"huge": 2} and summary.new == 2


def test_exif_orientation_swaps_width_and_height(sqlite_catalog, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    exif[0x0132] = "2026:11:03 07:08:09"
    (tmp_path / "rot").mkdir()
    (tmp_path / "rot" / "portrait.jpg").write_bytes(_jpeg_bytes(5, size=(64, 48), exif=exif))
    ingest(sqlite_catalog, tmp_path / "rot", OPTIONS)
    with sqlite_catalog.session() as session:
        frame = session.scalars(select(Frame)).one()
    assert (frame.width, frame.height, frame.exif_orientation) == (48, 64, 6)
    assert frame.captured_at == dt.datetime(2026, 11, 3, 7, 8, 9)


def test_timestamp_from_path_patterns():
    pattern = r"(?P<ts>\d{8}T\d{6}(?:\.\d+)?)"
    assert timestamp_from_path("/a/20260101T000000/x_20261102T060001.5.jpg", pattern, "%Y%m%dT%H%M%S.%f") == dt.datetime(2026, 11, 2, 6, 0, 1, 500000)
    assert timestamp_from_path("/a/x_20261102T060001.jpg", pattern, "%Y%m%dT%H%M%S.%f") == dt.datetime(2026, 11, 2, 6, 0, 1)
    assert timestamp_from_path("/a/frame.jpg", pattern, "%Y%m%dT%H%M%S.%f") is None


def test_missing_path_is_a_clear_error(sqlite_catalog, tmp_path):
    from curation.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        ingest(sqlite_catalog, tmp_path / "nope", OPTIONS)


def test_mp4_frames_sampled_at_stride(sqlite_catalog, tmp_path):
    import cv2  # opencv-python-headless is pinned (through label-studio-sdk)
    video = tmp_path / "vid" / "belt_20261102T060000.mp4"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened(), "OpenCV in the pinned stack cannot write mp4v"
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    options = IngestOptions(**{**OPTIONS.__dict__, "video_stride": 5, "video_frames_dir": tmp_path / "vf"})
    summary = ingest(sqlite_catalog, video.parent, options)
    assert summary.new == 4
    with sqlite_catalog.session() as session:
        frames = session.scalars(select(Frame).order_by(Frame.source_frame_index)).all()
    assert [f.source_frame_index for f in frames] == [0, 5, 10, 15]
    assert frames[1].captured_at == dt.datetime(2026, 11, 2, 6, 0, 0, 500000)
    assert frames[0].sequence == "belt_20261102T060000"
    again = ingest(sqlite_catalog, video.parent, options)
    assert again.new == 0
