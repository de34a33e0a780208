"""Ingest: scan folders of belt imagery into the catalog.

Each file is hashed (SHA-256 of its bytes; exact duplicates are stored once), fully decoded
(so truncated files are caught now, not during scoring), measured after EXIF orientation and
dated from EXIF or the file name. Files that fail any check go to the quarantine table with a
reason code and are never retried silently. Re-ingesting a folder is a no-op.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import select

from curation.catalog import Catalog, Frame, Quarantine
from curation.errors import InputError
from curation.progress import Advance, _noop

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}
VIDEO_EXTENSIONS = {".mp4"}
QUARANTINE_REASONS = ("zero_byte", "huge", "not_image", "truncated", "unreadable")

EXIF_ORIENTATION = 0x0112
EXIF_DATETIME = 0x0132
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 0x9003
# Orientations 5-8 rotate by 90/270 degrees, so the stored width/height swap.
ORIENTATIONS_SWAPPING_AXES = {5, 6, 7, 8}
# Files per catalog transaction: larger is faster, smaller loses less on a crash.
INGEST_COMMIT_EVERY = 500


@dataclass(frozen=True)
class IngestOptions:
    site: str
    line: str
    camera: str
    filename_pattern: str | None = None
    timestamp_format: str = "%Y%m%dT%H%M%S.%f"
    max_pixels: int = 40_000_000
    max_bytes: int = 64 * 1024 * 1024
    video_stride: int = 15
    workers: int = 2
    video_frames_dir: Path | None = None


@dataclass
class IngestSummary:
    scanned: int = 0
    new: int = 0
    duplicate: int = 0
    already_known: int = 0
    quarantined: int = 0
    skipped_other: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    new_frame_ids: list[int] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0

    def add(self, other: "IngestSummary") -> None:
        """Fold another part's counts into this one (seconds are the caller's to set)."""
        for name in ("scanned", "new", "duplicate", "already_known", "quarantined", "skipped_other"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, n in other.quarantine_reasons.items():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + n
        self.new_frame_ids.extend(other.new_frame_ids)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("new_frame_ids")
        out["files_per_s"] = round(self.files_per_s, 1)
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass(frozen=True)
class FileInfo:
    """What a worker learned about one file: either image facts or a quarantine reason."""

    path: str
    content_hash: str | None
    size_bytes: int
    width: int = 0
    height: int = 0
    format: str = ""
    exif_orientation: int = 1
    captured_at: dt.datetime | None = None
    reason: str | None = None  # set when the file must be quarantined
    detail: str = ""


def scan(root: Path) -> Iterator[Path]:
    """All files under ``root`` (or ``root`` itself), in a stable sorted order."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def parse_exif_datetime(raw: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except (ValueError, AttributeError):
        return None


def timestamp_from_path(path: str, pattern: str | None, fmt: str) -> dt.datetime | None:
    """Capture time from the file path with a regex whose named group ``ts`` matches ``fmt``."""
    if not pattern:
        return None
    match = None
    for match in re.finditer(pattern, path):
        pass  # the last match wins: file names are more specific than folder names
    if match is None or "ts" not in match.groupdict():
        return None
    text = match.group("ts")
    for candidate in (fmt, fmt.replace(".%f", "")):
        try:
            return dt.datetime.strptime(text, candidate)
        except ValueError:
            continue
    return None


def inspect_file(path: str, options: IngestOptions) -> FileInfo:
    """Hash and fully decode one file. Never raises for a bad file: returns a quarantine reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileInfo(path, None, 0, reason="unreadable", detail=f"cannot read file: {exc.strerror or exc}")
    size = len(data)
    if size == 0:
        return FileInfo(path, None, 0, reason="zero_byte", detail="file is empty (0 bytes)")
    content_hash = hashlib.sha256(data).hexdigest()
    if size > options.max_bytes:
        return FileInfo(path, content_hash, size, reason="huge", detail=f"{size} bytes > ingest.max_bytes={options.max_bytes}")
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > options.max_pixels:
                return FileInfo(
                    path, content_hash, size, reason="huge",
                    detail=f"{width}x{height} pixels > ingest.max_pixels={options.max_pixels}",
                )
            image_format = (image.format or "").lower()
            exif = image.getexif()
            image.load()  # full decode: truncated data raises here
    except UnidentifiedImageError:
        return FileInfo(path, content_hash, size, reason="not_image", detail="not a JPEG/PNG/WebP image (unidentified format)")
    except Image.DecompressionBombError as exc:  # far over PIL's own limit: refused at open
        return FileInfo(path, content_hash, size, reason="huge", detail=f"{exc} (ingest.max_pixels={options.max_pixels})")
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text.lower() or "premature" in text.lower() else "unreadable"
        return FileInfo(path, content_hash, size, reason=reason, detail=f"decode failed: {text}")
    orientation = int(exif.get(EXIF_ORIENTATION, 1) or 1)
    if orientation in ORIENTATIONS_SWAPPING_AXES:
        width, height = height, width
    captured_at = None
    raw_time = exif.get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL) or exif.get(EXIF_DATETIME)
    if raw_time:
        captured_at = parse_exif_datetime(str(raw_time))
    from_path = timestamp_from_path(path, options.filename_pattern, options.timestamp_format)
    # EXIF has whole seconds; a file name stamped within that second is the more precise clock.
    if from_path is not None and (captured_at is None or abs((from_path - captured_at).total_seconds()) < 1):
        captured_at = from_path
    return FileInfo(path, content_hash, size, width, height, image_format, orientation, captured_at)


def _inspect_star(args: tuple[str, IngestOptions]) -> FileInfo:
    return inspect_file(*args)


def _sequence_of(path: Path, root: Path) -> str:
    """Frames in one folder are one belt sequence unless the caller knows better."""
    try:
        rel = path.parent.relative_to(root)
    except ValueError:
        rel = path.parent
    return str(rel) if str(rel) != "." else root.name


def extract_video_frames(video: Path, out_dir: Path, stride: int) -> list[tuple[Path, int, float]]:
    """Decode every ``stride``-th frame of an MP4 to JPEG; returns (path, frame_index, t_seconds).

    Uses OpenCV (pinned through label-studio-sdk's opencv-python-headless). Already extracted
    frames are reused, so a rerun does not decode again.
    """
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is in the pinned stack
        raise InputError(f"cannot read video {video}: OpenCV is missing (pip install opencv-python-headless)") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    done_marker = out_dir / ".complete"
    if done_marker.exists():
        fps = float(done_marker.read_text().split()[0])
        return [(path, int(path.stem), int(path.stem) / fps) for path in sorted(out_dir.glob("*.jpg"))]
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        return []
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index % stride == 0:
            frame_path = out_dir / f"{index:07d}.jpg"
            cv2.imwrite(str(frame_path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            frames.append((frame_path, index, index / fps))
        index += 1
    capture.release()
    done_marker.write_text(f"{fps}\n")
    return frames


def ingest(
    catalog: Catalog,
    root: str | os.PathLike,
    options: IngestOptions,
    *,
    advance: Advance = _noop,
    on_total=None,
) -> IngestSummary:
    """Ingest every image (and sampled video frame) under ``root``; returns the counts.

    Idempotent: files whose path is already in the catalog (as a frame or in quarantine) are
    counted as ``already_known`` without being read again; a file whose bytes equal an existing
    frame's counts as ``duplicate`` and adds nothing.
    """
    started = time.perf_counter()
    root_path = Path(root).expanduser().resolve()
    if not root_path.exists():
        raise InputError(f"ingest path {str(root)!r} does not exist; pass a folder of JPEG/PNG/WebP/MP4 files")
    summary = IngestSummary()
    with catalog.session() as session:
        known_paths = set(session.scalars(select(Frame.path)))
        known_paths.update(session.scalars(select(Quarantine.path)))

    images: list[Path] = []
    videos: list[Path] = []
    for path in scan(root_path):
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            images.append(path)
        elif suffix in VIDEO_EXTENSIONS:
            videos.append(path)
        else:
            summary.skipped_other += 1
    candidates: list[tuple[Path, dict]] = []
    for path in images:
        candidates.append((path, {"sequence": _sequence_of(path, root_path)}))
    for video in videos:
        frames_dir = (options.video_frames_dir or (video.parent / ".frames")) / hashlib.sha256(
            str(video).encode()
        ).hexdigest()[:16]
        start = timestamp_from_path(str(video), options.filename_pattern, options.timestamp_format)
        for frame_path, frame_index, t_seconds in extract_video_frames(video, frames_dir, options.video_stride):
            extra = {"sequence": video.stem, "source_frame_index": frame_index}
            if start is not None:
                extra["captured_at"] = start + dt.timedelta(seconds=t_seconds)
            candidates.append((frame_path, extra))

    summary.scanned = len(candidates)
    if on_total:
        on_total(len(candidates))
    todo = []
    for path, extra in candidates:
        if str(path) in known_paths:
            summary.already_known += 1
            advance(1)
        else:
            todo.append((path, extra))

    batch: list[tuple[FileInfo, dict]] = []
    for info, extra in zip(_inspect_all([str(p) for p, _ in todo], options), (e for _, e in todo)):
        batch.append((info, extra))
        if len(batch) >= INGEST_COMMIT_EVERY:
            _commit_batch(catalog, batch, options, summary)
            advance(len(batch))
            batch = []
    if batch:
        _commit_batch(catalog, batch, options, summary)
        advance(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def _inspect_all(paths: list[str], options: IngestOptions) -> Iterable[FileInfo]:
    if options.workers <= 1 or len(paths) < 64:
        return (inspect_file(p, options) for p in paths)
    executor = ProcessPoolExecutor(max_workers=options.workers)
    # chunksize amortizes the pickling round trip; results keep input order
    results = executor.map(_inspect_star, ((p, options) for p in paths), chunksize=32)

    def iterate():
        try:
            yield from results
        finally:
            executor.shutdown(cancel_futures=True)

    return iterate()


def _commit_batch(catalog: Catalog, batch: list[tuple[FileInfo, dict]], options: IngestOptions, summary: IngestSummary) -> None:
    hashes = {info.content_hash for info, _ in batch if info.reason is None}
    with catalog.session() as session:
        existing = set(session.scalars(select(Frame.content_hash).where(Frame.content_hash.in_(hashes)))) if hashes else set()
        new_frames: list[Frame] = []
        for info, extra in batch:
            if info.reason is not None:
                session.add(Quarantine(path=info.path, content_hash=info.content_hash, reason=info.reason, detail=info.detail))
                summary.quarantined += 1
                summary.quarantine_reasons[info.reason] = summary.quarantine_reasons.get(info.reason, 0) + 1
                continue
            if info.content_hash in existing:
                summary.duplicate += 1
                continue
            existing.add(info.content_hash)
            frame = Frame(
                content_hash=info.content_hash,
                path=info.path,
                width=info.width,
                height=info.height,
                format=info.format,
                size_bytes=info.size_bytes,
                exif_orientation=info.exif_orientation,
                site=options.site,
                line=options.line,
                camera=options.camera,
                captured_at=extra.get("captured_at") or info.captured_at,
                sequence=extra.get("sequence"),
                source_frame_index=extra.get("source_frame_index"),
            )
            session.add(frame)
            new_frames.append(frame)
        session.flush()
        summary.new += len(new_frames)
        summary.new_frame_ids.extend(frame.id for frame in new_frames)


def options_from_settings(settings, *, site=None, line=None, camera=None, workers=None, video_stride=None) -> IngestOptions:
    return IngestOptions(
        site=site or settings["ingest.site"],
        line=line or settings["ingest.line"],
        camera=camera or settings["ingest.camera"],
        filename_pattern=settings["ingest.filename_pattern"],
        timestamp_format=settings["ingest.timestamp_format"],
        max_pixels=settings["ingest.max_pixels"],
        max_bytes=settings["ingest.max_bytes"],
        video_stride=video_stride or settings["ingest.video_stride"],
        workers=workers or settings["ingest.workers"],
        video_frames_dir=settings.state_dir / "video_frames",
    )


def ingest_tree(
    catalog: Catalog,
    settings,
    path: str | os.PathLike,
    *,
    site: str | None = None,
    line: str | None = None,
    camera: str | None = None,
    site_from_path: bool = False,
    workers: int | None = None,
    video_stride: int | None = None,
    advance: Advance = _noop,
) -> IngestSummary:
    """Ingest ``path`` with options from settings; with ``site_from_path`` the folders under
    ``path`` are ``<site>/<camera>/...`` and each is ingested with those names."""
    root = Path(path).expanduser().resolve()
    if not site_from_path:
        options = options_from_settings(settings, site=site, line=line, camera=camera, workers=workers, video_stride=video_stride)
        return ingest(catalog, root, options, advance=advance)
    if not root.is_dir():
        raise InputError(f"--site-from-path needs a folder laid out as <site>/<camera>/...; {str(root)!r} is not a folder")
    total = IngestSummary()
    started = time.perf_counter()
    for site_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for camera_dir in sorted(p for p in site_dir.iterdir() if p.is_dir()):
            options = options_from_settings(
                settings, site=site or site_dir.name, line=line, camera=camera or camera_dir.name,
                workers=workers, video_stride=video_stride,
            )
            total.add(ingest(catalog, camera_dir, options, advance=advance))
    total.seconds = time.perf_counter() - started
    return total


def quarantine_report(catalog: Catalog, limit: int = 50) -> dict:
    from sqlalchemy import func

    with catalog.session() as session:
        total = session.scalar(select(func.count()).select_from(Quarantine))
        by_reason = dict(session.execute(select(Quarantine.reason, func.count()).group_by(Quarantine.reason)).all())
        rows = session.scalars(select(Quarantine).order_by(Quarantine.id.desc()).limit(limit)).all()
        files = [{"path": r.path, "reason": r.reason, "detail": r.detail, "created_at": r.created_at.isoformat()} for r in rows]
    return {"total": total, "by_reason": by_reason, "files": files}
