"""Versioned dataset exports: immutable folders with a manifest, checksums and a diff.

A version folder holds (see :mod:`exporters.base` for the per-format files)::

    manifest.json     name, parent, tool version, class map, split fractions/counts, class counts,
                      filters, problem counts, diff counts, sha256 of the files below
    frames.jsonl      one line per frame: frame_id, file, split, group, content_hash, labels_hash
    SHA256SUMS        every label file and image ('sha256sum -c SHA256SUMS' verifies the version)
    problems.jsonl    every input problem found (dropped frames, clipped boxes are counted)
    diff.jsonl        vs the parent: added, removed and relabeled frames

Atomic: everything is written to a hidden temp folder next to the target and renamed into place
only when complete; any failure removes the temp folder, so there is never a half-written version.

Streaming: the source is read twice (pass 1: group class counts for the split plan; pass 2:
write). Memory holds one row per split group, never one per frame; the diff is a merge of two
frame lists sorted by frame id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from curation.errors import ExportError, InputError
from curation.progress import Advance, _noop
from exporters.base import CHUNK_BYTES, IMAGES_DIR, FileDigest
from exporters.splits import SPLITS, SplitPlanner, validate_fractions
from exporters.types import EMPTY_FRAME, MISSING_IMAGE, UNKNOWN_CLASS, LabeledImage, Problem, check_image, labels_hash
from curation.processes import pid_alive as _pid_alive

MANIFEST = "manifest.json"
FRAMES = "frames.jsonl"
CHECKSUMS = "SHA256SUMS"
PROBLEMS = "problems.jsonl"
DIFF = "diff.jsonl"
TEMP_PREFIX = ".tmp-"
IMAGE_MODES = ("symlink", "hardlink", "copy")
ON_BAD = ("drop", "fail")
ON_EMPTY = ("keep", "drop", "fail")
# --on-bad fail quotes this many problems in the error; all of them are in the counts.
PROBLEMS_QUOTED = 5

Source = Callable[[], Iterator[LabeledImage]]


@dataclass(frozen=True)
class VersionOptions:
    """How to write a version. ``formats`` are EXPORTERS names; ``class_names`` the class map."""

    name: str
    formats: Sequence[str]
    class_names: Sequence[str]
    fractions: Sequence[float] = (0.8, 0.1, 0.1)
    seed: int = 0
    images: str = "symlink"
    on_bad: str = "drop"
    on_empty: str = "keep"
    filters: dict = field(default_factory=dict)
    tool_version: str = "unknown"
    parent: Path | None = None  # folder of the parent version


@dataclass
class VersionResult:
    name: str
    path: str
    formats: list[str]
    n_frames: int
    n_boxes: int
    manifest_sha256: str
    split_counts: dict
    class_counts: dict
    problems: dict
    unknown_classes: dict
    dropped_frames: int
    clipped_boxes: int
    empty_frames: int
    diff: dict | None
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def version_file_name(frame_id: int, image_path: str) -> str:
    """Name of a frame's image inside a version: ``<frame id, 8 digits>-<original name>``.

    Unique per version (frame ids are), readable, and sorted like the catalog.
    """
    base = os.path.basename(image_path) or "frame"
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, "jpg"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80]
    return f"{int(frame_id):08d}-{safe}.{suffix.lower()}"




def remove_stale_temps(root: Path) -> list[str]:
    """Delete temp folders of exports whose process died (a kill -9 mid-export); returns them."""
    removed = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith(TEMP_PREFIX):
            try:
                pid = int(entry.name.split("-")[-2])
            except (ValueError, IndexError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


def read_manifest(version_dir: Path) -> dict:
    path = Path(version_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{str(path)!r} is not a readable version manifest: {exc}") from None


def iter_frames(version_dir: Path) -> Iterator[dict]:
    """The rows of a version's frames.jsonl, in frame id order."""
    with open(Path(version_dir) / FRAMES, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def parent_splits(version_dir: Path) -> dict[str, str]:
    """group -> split of a parent version (kept by its children)."""
    return {row["group"]: row["split"] for row in iter_frames(version_dir)}


class _Digests:
    """Streams ``sha256  path`` lines to SHA256SUMS (the format 'sha256sum -c' reads)."""

    def __init__(self, path: Path):
        self.handle = open(path, "w", encoding="utf-8")

    def add(self, digests: Iterable[FileDigest]) -> None:
        for relpath, sha in digests:
            self.handle.write(f"{sha}  {relpath}\n")

    def close(self) -> None:
        self.handle.close()


def _place_image(source: str, target: str, mode: str) -> None:
    if mode == "symlink":
        os.symlink(os.path.abspath(source), target)
    elif mode == "hardlink":
        try:
            os.link(source, target)
        except OSError as exc:
            raise ExportError(f"cannot hardlink {source!r} into the version ({exc.strerror}); images on another disk need --images copy or symlink") from None
    else:
        shutil.copyfile(source, target)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _diff(parent_dir: Path, frames_path: Path, out_path: Path) -> dict:
    """Merge-join parent and child frames.jsonl (both sorted by frame id) into diff.jsonl."""
    counts = Counter(added=0, removed=0, relabeled=0, unchanged=0)
    parent_rows = iter_frames(parent_dir)
    child_rows = iter_frames(frames_path.parent)
    p = next(parent_rows, None)
    c = next(child_rows, None)
    with open(out_path, "w", encoding="utf-8") as out:
        def emit(change: str, row: dict, **extra) -> None:
            counts[change] += 1
            out.write(json.dumps({"change": change, "frame_id": row["frame_id"], "file": row["file"],
                                  "content_hash": row["content_hash"], **extra}) + "\n")

        while p is not None or c is not None:
            if c is None or (p is not None and p["frame_id"] < c["frame_id"]):
                emit("removed", p)
                p = next(parent_rows, None)
            elif p is None or c["frame_id"] < p["frame_id"]:
                emit("added", c, split=c["split"])
                c = next(child_rows, None)
            else:
                if p["labels_hash"] != c["labels_hash"]:
                    emit("relabeled", c, boxes_before=p["boxes"], boxes_after=c["boxes"])
                else:
                    counts["unchanged"] += 1
                p = next(parent_rows, None)
                c = next(child_rows, None)
    return dict(counts)


def write_version(
    source: Source, out_root: str | Path, options: VersionOptions, *, split_of_group: dict[str, str] | None = None,
    advance: Advance = _noop,
) -> VersionResult:
    """Write a dataset version under ``out_root/<name>`` from ``source``.

    ``source()`` must yield the same frames, in increasing ``frame_id`` order, each time it is
    called (it is read twice). Each image needs ``frame_id``, ``image_path``, ``content_hash``,
    ``file_name`` (see :func:`version_file_name`) and ``group``. ``split_of_group``: a split plan
    made by the caller (a :class:`~exporters.splits.SplitPlanner` fed with the parent's splits,
    see :func:`parent_splits`); without it, a first pass over ``source`` makes one. Bad input follows
    ``options.on_bad``: ``drop`` leaves out the whole frame (a frame with one bad box removed would
    teach the model that the object is background) and records the problem; ``fail`` raises
    :class:`ExportError` naming the first problems. Empty frames follow ``options.on_empty``.
    """
    import time

    from exporters import EXPORTERS

    started = time.perf_counter()
    if options.images not in IMAGE_MODES:
        raise InputError(f"--images {options.images!r} is not one of {', '.join(IMAGE_MODES)}")
    if options.on_bad not in ON_BAD:
        raise InputError(f"--on-bad {options.on_bad!r} is not one of {', '.join(ON_BAD)}")
    if options.on_empty not in ON_EMPTY:
        raise InputError(f"--empty {options.on_empty!r} is not one of {', '.join(ON_EMPTY)}")
    fractions = validate_fractions(options.fractions)
    formats = [EXPORTERS.get(name) for name in dict.fromkeys(options.formats)]
    if not formats:
        raise InputError("no export format given; pass --format coco,yolo,voc")
    if not options.name or "/" in options.name or options.name.startswith("."):
        raise InputError(f"version name {options.name!r} must be a plain folder name (no '/', not starting with '.')")
    class_names = list(options.class_names)
    out_root = Path(out_root)
    final = out_root / options.name
    if final.exists():
        raise ExportError(f"dataset version {str(final)!r} already exists; versions are immutable, pick a new --name")
    out_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_root)
    fixed = parent_splits(options.parent) if options.parent is not None else {}
    parent_manifest = read_manifest(options.parent) if options.parent is not None else None

    if split_of_group is None:  # pass 1: group class counts -> split plan
        planner = SplitPlanner(class_names, fractions, seed=options.seed, fixed=fixed)
        for image in source():
            planner.add(image.group or f"frame:{image.frame_id}", (box.label for box in image.boxes))
        split_of_group = planner.plan()

    temp = out_root / f"{TEMP_PREFIX}{options.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temp.mkdir()
    try:
        result = _write_pass(source, temp, options, class_names, formats, split_of_group, advance)
        diff_counts = _diff(options.parent, temp / FRAMES, temp / DIFF) if options.parent is not None else None
        manifest = {
            "name": options.name,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tool": {"name": "beltcurate", "version": options.tool_version},
            "parent": None if parent_manifest is None else {
                "name": parent_manifest["name"], "manifest_sha256": _file_sha256(Path(options.parent) / MANIFEST)},
            "formats": [f.name for f in formats],
            "images": options.images,
            "class_map": class_names,
            "splits": {"fractions": dict(zip(SPLITS, fractions)), "seed": options.seed,
                       "groups": len(split_of_group), "groups_kept_from_parent": len(set(fixed) & set(split_of_group)),
                       "counts": result["split_counts"]},
            "class_counts": result["class_counts"],
            "counts": {"frames": result["n_frames"], "boxes": result["n_boxes"], "dropped_frames": result["dropped_frames"],
                       "clipped_boxes": result["clipped_boxes"], "empty_frames": result["empty_frames"]},
            "problems": result["problems"],
            "unknown_classes": result["unknown_classes"],
            "filters": options.filters,
            "on_bad": options.on_bad,
            "on_empty": options.on_empty,
            "diff": diff_counts,
            "files": {name: _file_sha256(temp / name) for name in (FRAMES, CHECKSUMS, PROBLEMS) + ((DIFF,) if diff_counts is not None else ())},
        }
        data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
        (temp / MANIFEST).write_bytes(data)
        if final.exists():
            raise ExportError(f"dataset version {str(final)!r} appeared while exporting; versions are immutable, pick a new --name")
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return VersionResult(
        name=options.name, path=str(final), formats=manifest["formats"], n_frames=result["n_frames"],
        n_boxes=result["n_boxes"], manifest_sha256=hashlib.sha256(data).hexdigest(),
        split_counts=result["split_counts"], class_counts=result["class_counts"], problems=result["problems"],
        unknown_classes=result["unknown_classes"],
        dropped_frames=result["dropped_frames"], clipped_boxes=result["clipped_boxes"],
        empty_frames=result["empty_frames"], diff=diff_counts, seconds=round(time.perf_counter() - started, 3),
    )


def _write_pass(source: Source, temp: Path, options: VersionOptions, class_names, formats, split_of_group, advance) -> dict:
    writers = [fmt.writer(temp, class_names) for fmt in formats]
    digests = _Digests(temp / CHECKSUMS)
    split_counts = {s: {"frames": 0, "boxes": 0} for s in SPLITS}
    class_counts = {s: Counter() for s in SPLITS}
    problem_counts: Counter = Counter()
    unknown_classes: Counter = Counter()
    dropped = clipped_total = empty = n_frames = n_boxes = 0
    made_dirs: set[str] = set()
    temp_str = str(temp)
    last_frame_id = None
    with open(temp / FRAMES, "w", encoding="utf-8") as frames_out, open(temp / PROBLEMS, "w", encoding="utf-8") as problems_out:
        def report(problems: list[Problem], frame_id) -> None:
            for problem in problems:
                problem_counts[problem.kind] += 1
                if problem.kind == UNKNOWN_CLASS and problem.box is not None:
                    unknown_classes[problem.box.label] += 1
                problems_out.write(json.dumps({"frame_id": frame_id, **problem.as_dict()}) + "\n")

        def fail(problems: list[Problem]) -> None:
            quoted = "; ".join(str(p) for p in problems[:PROBLEMS_QUOTED])
            raise ExportError(
                f"export {options.name!r} stopped on bad input ({len(problems)} problem(s) in frame): {quoted}. "
                "Fix the labels, or pass --on-bad drop to leave such frames out (they are listed in problems.jsonl)"
            )

        for image in source():
            advance(1)
            if image.frame_id is None or (last_frame_id is not None and image.frame_id <= last_frame_id):
                raise ExportError(f"export source must yield frames with increasing frame ids (got {image.frame_id} after {last_frame_id})")
            last_frame_id = image.frame_id
            problems: list[Problem] = []
            if not image.image_path or not os.path.isfile(image.image_path):
                problems.append(Problem(MISSING_IMAGE, image.image_path or f"frame {image.frame_id}",
                                        "image file is missing; restore it or re-ingest, or drop the frame with --on-bad drop"))
            clean, box_problems, n_clipped = check_image(image, class_names)
            problems += [p for p in box_problems if p.kind != EMPTY_FRAME]
            if problems:
                if options.on_bad == "fail":
                    fail(problems)
                report(problems, image.frame_id)
                dropped += 1
                continue
            if not clean.boxes:
                empty += 1
                empty_problem = Problem(EMPTY_FRAME, image.image_path or image.file_name, "frame has no boxes (a negative example)")
                if options.on_empty == "fail":
                    raise ExportError(f"export {options.name!r}: {empty_problem}; label it, or pass --empty keep (negative example) or --empty drop")
                report([empty_problem], image.frame_id)
                if options.on_empty == "drop":
                    dropped += 1
                    continue
            clipped_total += n_clipped
            split = split_of_group[image.group or f"frame:{image.frame_id}"]
            clean = LabeledImage(
                file_name=clean.file_name, width=clean.width, height=clean.height, boxes=clean.boxes,
                image_path=clean.image_path, frame_id=clean.frame_id, content_hash=clean.content_hash,
                group=clean.group, split=split,
            )
            image_rel = f"{IMAGES_DIR}/{split}/{clean.file_name}"
            if split not in made_dirs:
                (temp / IMAGES_DIR / split).mkdir(parents=True, exist_ok=True)
                made_dirs.add(split)
            target = os.path.join(temp_str, image_rel)  # str, not Path: see exporters.base.write_bytes
            _place_image(clean.image_path, target, options.images)  # type: ignore[arg-type]
            digests.add([(image_rel, clean.content_hash or _file_sha256(Path(target)))])
            for writer in writers:
                digests.add(writer.add(clean))
            n_frames += 1
            n_boxes += len(clean.boxes)
            split_counts[split]["frames"] += 1
            split_counts[split]["boxes"] += len(clean.boxes)
            class_counts[split].update(box.label for box in clean.boxes)
            frames_out.write(json.dumps({
                "frame_id": clean.frame_id, "file": image_rel, "split": split, "group": clean.group or f"frame:{clean.frame_id}",
                "content_hash": clean.content_hash, "labels_hash": labels_hash(clean.boxes), "boxes": len(clean.boxes),
            }) + "\n")
        for writer in writers:
            digests.add(writer.close())
    digests.close()
    totals = Counter()
    for counter in class_counts.values():
        totals.update(counter)
    return {
        "n_frames": n_frames, "n_boxes": n_boxes, "dropped_frames": dropped, "clipped_boxes": clipped_total,
        "empty_frames": empty, "problems": dict(sorted(problem_counts.items())),
        "unknown_classes": dict(unknown_classes.most_common()),
        "split_counts": split_counts,
        "class_counts": {"total": {name: totals.get(name, 0) for name in class_names},
                         **{s: {name: class_counts[s].get(name, 0) for name in class_names} for s in SPLITS}},
    }
