"""``beltcurate import-labels``: bring a dataset labeled before beltcurate into the catalog.

Each image is ingested like ``beltcurate ingest`` does (sha256, full decode, EXIF size; broken files
are quarantined) and its boxes become an ``Annotation`` with ``source="import:<name>"`` and
``source_id="<split>/<file>"``, so selection skips labeled frames and exports include them.

Rules:
- frames take site/camera/sequence/capture time from the dataset where it has them (COCO image
  fields, as ``beltcurate synth`` writes), else from the options/settings and the image (EXIF,
  file name) as ingest does; they drive the grouped splits of exports;
- idempotent: an image whose (source, source_id) is already in the catalog is skipped;
- an imported annotation becomes the frame's *current* one only if the frame has none yet (labels
  pulled from Label Studio are never overridden by an import);
- identical images (same bytes) in one dataset are one frame; when their labels disagree the first
  labeled copy wins and the conflict is reported. Images without a label file (YOLO: "no
  objects") are processed last, so a stray copy without labels never wins over a labeled one;
- bad labels (box outside the image, unknown class id, malformed row, missing image) follow
  ``on_bad``: ``drop`` imports the frame without its labels (it stays eligible for labeling) and
  reports it; ``fail`` stops before anything is written.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import func, select

from curation.catalog import Annotation, Catalog, Frame, Quarantine, utcnow
from curation.errors import InputError
from curation.ingest import FileInfo, IngestOptions, inspect_file, options_from_settings
from curation.progress import Advance, _noop
from exporters import EXPORTERS
from exporters.types import EMPTY_FRAME, MISSING_IMAGE, LabeledImage, Problem, check_image, labels_hash
from exporters.yolo import NO_LABEL_FILE, POLYGON_AS_BOX

SOURCE_PREFIX = "import:"
SOURCE_MAX = 32  # Annotation.source is String(32)
SOURCE_ID_MAX = 128  # Annotation.source_id is String(128)
# Notes describe a faithful conversion; they never drop labels or fail an import.
NOTE_KINDS = {EMPTY_FRAME, NO_LABEL_FILE, POLYGON_AS_BOX}
CONFLICTING_DUPLICATE = "conflicting_duplicate"
# Images per catalog transaction (as ingest): larger is faster, smaller loses less on a crash.
IMPORT_COMMIT_EVERY = 500
PROBLEMS_QUOTED = 5


@dataclass
class ImportSummary:
    source: str
    format: str
    images: int = 0
    new_frames: int = 0
    existing_frames: int = 0
    annotations: int = 0
    current: int = 0
    not_current: int = 0
    already_imported: int = 0
    dropped: int = 0
    quarantined: int = 0
    duplicate_images: int = 0
    conflicting_duplicates: int = 0
    boxes: int = 0
    problems: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    class_names: list | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def source_name(name: str) -> str:
    source = f"{SOURCE_PREFIX}{name}"
    if not name or len(source) > SOURCE_MAX or any(ch.isspace() for ch in name):
        raise InputError(f"import name {name!r} must be 1-{SOURCE_MAX - len(SOURCE_PREFIX)} characters without spaces; pass --name")
    return source


def source_id(image: LabeledImage) -> str:
    text = f"{image.split or '-'}/{image.file_name}"
    if len(text) <= SOURCE_ID_MAX:
        return text
    import hashlib

    digest = hashlib.sha256(text.encode()).hexdigest()[:40]
    return f"{text[:SOURCE_ID_MAX - 41]}~{digest}"


def _bad(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.kind not in NOTE_KINDS]


def _checked(image: LabeledImage) -> tuple[LabeledImage, list[Problem]]:
    problems = list(image.problems)
    if not image.image_path or not os.path.isfile(image.image_path):
        problems.append(Problem(MISSING_IMAGE, image.image_path or image.file_name, "image file listed by the labels is missing"))
        return image, problems
    if image.width > 0 and image.height > 0:
        clean, box_problems, _ = check_image(image, None)
        problems += box_problems
        image = clean
    return image, problems


def _ordered(images: Iterator[LabeledImage]) -> Iterator[LabeledImage]:
    """Images with labels first; those without a label file after (see module doc)."""
    deferred = []
    for image in images:
        if any(p.kind == NO_LABEL_FILE for p in image.problems):
            deferred.append(image)
        else:
            yield image
    yield from deferred


def _inspect(paths: list[str], options: IngestOptions) -> list[FileInfo]:
    if options.workers <= 1 or len(paths) < 64:
        return [inspect_file(path, options) for path in paths]
    with ProcessPoolExecutor(max_workers=options.workers) as pool:
        return list(pool.map(inspect_file, paths, repeat(options), chunksize=32))


def import_labels(
    catalog: Catalog,
    settings,
    path: str | os.PathLike,
    fmt: str,
    *,
    name: str | None = None,
    site: str | None = None,
    line: str | None = None,
    camera: str | None = None,
    on_bad: str = "drop",
    workers: int | None = None,
    advance: Advance = _noop,
) -> ImportSummary:
    """Import the labeled dataset at ``path`` (format ``fmt``: coco, yolo or voc); see module doc."""
    started = time.perf_counter()
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise InputError(f"import path {str(path)!r} does not exist; pass the dataset folder (or the COCO JSON file)")
    if on_bad not in ("drop", "fail"):
        raise InputError(f"--on-bad {on_bad!r} is not one of drop, fail")
    format_ = EXPORTERS.get(fmt)
    source = source_name(name or (root.stem if root.is_file() else root.name))
    options = options_from_settings(settings, site=site, line=line, camera=camera, workers=workers)
    summary = ImportSummary(source=source, format=fmt, class_names=format_.class_names(root))
    problem_counts: Counter = Counter()

    def note(problems: list[Problem]) -> None:
        for problem in problems:
            problem_counts[problem.kind] += 1
            if len(summary.examples) < 20 and problem.kind not in NOTE_KINDS:
                summary.examples.append(str(problem))

    if on_bad == "fail":
        bad = [p for image in format_.read_dataset(root) for p in _bad(_checked(image)[1])]
        if bad:
            quoted = "; ".join(str(p) for p in bad[:PROBLEMS_QUOTED])
            raise InputError(f"{len(bad)} bad label(s) in {str(root)!r}, nothing imported: {quoted}. Fix them or pass --on-bad drop")

    with catalog.session() as session:
        # frames with ids from here on were created by this import (duplicates within the dataset)
        first_new_id = (session.scalar(select(func.max(Frame.id))) or 0) + 1
    batch: list[LabeledImage] = []
    for image in _ordered(format_.read_dataset(root)):
        batch.append(image)
        if len(batch) >= IMPORT_COMMIT_EVERY:
            _import_batch(catalog, batch, source, options, summary, note, first_new_id)
            advance(len(batch))
            batch = []
    if batch:
        _import_batch(catalog, batch, source, options, summary, note, first_new_id)
        advance(len(batch))
    summary.problems = dict(sorted(problem_counts.items()))
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _import_batch(
    catalog: Catalog, batch: list[LabeledImage], source: str, options: IngestOptions, summary: ImportSummary, note, first_new_id: int
) -> None:
    checked = [_checked(image) for image in batch]
    summary.images += len(batch)
    with catalog.session() as session:
        ids = [source_id(image) for image, _ in checked]
        done = set(session.scalars(select(Annotation.source_id).where(Annotation.source == source, Annotation.source_id.in_(ids))))
    todo = []
    for (image, problems), sid in zip(checked, ids):
        if sid in done:
            summary.already_imported += 1
        elif any(p.kind == MISSING_IMAGE for p in problems):
            note(problems)
            summary.dropped += 1
        else:
            todo.append((image, problems, sid))
    infos = _inspect([str(Path(image.image_path).resolve()) for image, _, _ in todo], options)
    with catalog.session() as session:
        hashes = {info.content_hash for info in infos if info.content_hash}
        frames = {f.content_hash: f for f in session.scalars(select(Frame).where(Frame.content_hash.in_(hashes)))} if hashes else {}
        quarantined_paths = set(session.scalars(select(Quarantine.path).where(Quarantine.path.in_([i.path for i in infos]))))
        for (image, problems, sid), info in zip(todo, infos):
            if info.reason is not None:
                if info.path not in quarantined_paths:
                    session.add(Quarantine(path=info.path, content_hash=info.content_hash, reason=info.reason, detail=info.detail))
                    quarantined_paths.add(info.path)
                summary.quarantined += 1
                note([Problem("quarantined", info.path, f"{info.reason}: {info.detail}")])
                continue
            if (image.width, image.height) not in ((0, 0), (info.width, info.height)):
                problems = problems + [Problem("size_mismatch", info.path, f"labels say {image.width}x{image.height}, image is {info.width}x{info.height}")]
            frame = frames.get(info.content_hash)
            if frame is None:
                meta = image.meta or {}
                frame = Frame(
                    content_hash=info.content_hash, path=info.path, width=info.width, height=info.height, format=info.format,
                    size_bytes=info.size_bytes, exif_orientation=info.exif_orientation,
                    site=str(meta.get("site") or options.site), line=str(meta.get("line") or options.line),
                    camera=str(meta.get("camera") or options.camera),
                    captured_at=_datetime(meta.get("captured_at")) or info.captured_at,
                    sequence=None if meta.get("sequence") is None else str(meta["sequence"]),
                )
                session.add(frame)
                session.flush()
                frames[info.content_hash] = frame
                summary.new_frames += 1
            elif frame.id < first_new_id:
                summary.existing_frames += 1
            else:
                summary.duplicate_images += 1
            bad = _bad(problems)
            note(problems)
            if bad:
                summary.dropped += 1
                continue
            current = session.scalar(
                select(Annotation).where(Annotation.frame_id == frame.id, Annotation.is_current.is_(True))
            )
            stored_problems = [p.as_dict() for p in problems if p.kind != EMPTY_FRAME]
            is_current = current is None
            if current is not None:
                summary.not_current += 1
                if current.source == source and labels_hash(_boxes(current.boxes)) != labels_hash(image.boxes):
                    conflict = Problem(CONFLICTING_DUPLICATE, info.path,
                                       f"same image as {current.source_id!r} with different labels; {current.source_id!r} is kept as current")
                    note([conflict])
                    stored_problems.append(conflict.as_dict())
                    summary.conflicting_duplicates += 1
            session.add(Annotation(
                frame_id=frame.id, source=source, source_id=sid, boxes=[b.to_catalog() for b in image.boxes],
                status="accepted", is_current=is_current, problems=stored_problems, created_at=utcnow(), updated_at=utcnow(),
            ))
            session.flush()
            summary.annotations += 1
            summary.current += int(is_current)
            summary.boxes += len(image.boxes)


def _datetime(value) -> dt.datetime | None:
    """An ISO time from a dataset's metadata (naive UTC, as the catalog stores), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _boxes(data):
    from exporters.types import Box

    return [Box.from_catalog(b) for b in data or ()]
