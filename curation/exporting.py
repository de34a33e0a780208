"""Catalog glue for ``beltcurate export``: stream the current accepted annotations joined with their
frames into :func:`exporters.versions.write_version`, and record the version in the catalog.

Two passes over the catalog: the first, in camera/time order, assigns each frame its split group
(site/camera/sequence cut at capture-time gaps, :class:`exporters.splits.SessionGrouper`) and
counts classes per group for the split plan; the second, in frame id order, writes. The frame ->
group table is two numpy arrays (12 bytes per frame) plus one string per group.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import or_, select

from curation.catalog import Annotation, Catalog, DatasetVersion, Frame
from curation.errors import CatalogError, ExportError, InputError
from curation.progress import Advance, _noop
from exporters.splits import SessionGrouper, SplitPlanner
from exporters.types import Box, LabeledImage, load_class_map
from exporters.versions import VersionOptions, parent_splits, read_manifest, version_file_name, write_version

# Rows fetched per database round trip while streaming (memory vs round trips).
STREAM_BATCH = 2000


def tool_version() -> str:
    try:
        return metadata.version("beltcurate")
    except metadata.PackageNotFoundError:
        return "unknown"


def resolve_class_map(settings, classes: str | None = None) -> tuple[list[str], str]:
    """Class names from ``--classes``, else the ``classes`` setting, else the synthetic set's."""
    path = classes or settings["classes"]
    if path:
        resolved = settings.resolve_path(path) if not os.path.isabs(str(path)) and not Path(path).exists() else Path(path)
        return load_class_map(resolved), str(resolved)
    from curation.synth import CLASSES

    return list(CLASSES), "built-in synthetic classes (set 'classes' or pass --classes)"


def _labeled(stmt, sites: Sequence[str], sources: Sequence[str]):
    stmt = stmt.join(Annotation, Annotation.frame_id == Frame.id).where(
        Annotation.is_current.is_(True), Annotation.status == "accepted"
    )
    if sites:
        stmt = stmt.where(Frame.site.in_(list(sites)))
    if sources:
        # "import:" matches every import; an exact source matches itself
        stmt = stmt.where(or_(*[Annotation.source.startswith(s) if s.endswith(":") else Annotation.source == s for s in sources]))
    return stmt


class GroupTable:
    """frame id -> split group, for every frame that will be exported."""

    def __init__(self, frame_ids: np.ndarray, group_rows: np.ndarray, keys: list[str]):
        order = np.argsort(frame_ids, kind="stable")
        self.frame_ids = frame_ids[order]
        self.group_rows = group_rows[order]
        self.keys = keys

    def __len__(self) -> int:
        return len(self.frame_ids)

    def group_of(self, frame_id: int) -> str:
        pos = int(np.searchsorted(self.frame_ids, frame_id))
        if pos >= len(self.frame_ids) or self.frame_ids[pos] != frame_id:
            raise CatalogError(f"frame {frame_id} got labeled while exporting; rerun the export")
        return self.keys[self.group_rows[pos]]


def plan_splits(
    catalog: Catalog, class_names: Sequence[str], fractions: Sequence[float], *, seed: int, gap_s: float,
    fixed: dict[str, str] | None = None, sites: Sequence[str] = (), sources: Sequence[str] = (),
) -> tuple[GroupTable, dict[str, str]]:
    """One pass over the labeled frames in camera/time order: each frame's group (see
    :class:`~exporters.splits.SessionGrouper`) and the class counts per group -> the split plan."""
    stmt = _labeled(select(Frame.id, Frame.site, Frame.camera, Frame.sequence, Frame.captured_at, Annotation.boxes), sites, sources)
    stmt = stmt.order_by(Frame.site, Frame.camera, Frame.sequence, Frame.captured_at, Frame.id)
    grouper = SessionGrouper(gap_s)
    planner = SplitPlanner(class_names, fractions, seed=seed, fixed=fixed)
    ids: list[int] = []
    rows: list[int] = []
    key_row: dict[str, int] = {}
    keys: list[str] = []
    with catalog.session() as session:
        for frame_id, site, camera, sequence, captured_at, boxes in session.execute(stmt.execution_options(yield_per=STREAM_BATCH)):
            key = grouper.key(frame_id, site, camera, sequence, captured_at)
            row = key_row.get(key)
            if row is None:
                row = key_row[key] = len(keys)
                keys.append(key)
            ids.append(frame_id)
            rows.append(row)
            planner.add(key, [box.get("label") for box in boxes or ()])
    table = GroupTable(np.asarray(ids, dtype=np.int64), np.asarray(rows, dtype=np.int32), keys)
    return table, planner.plan()


def iter_labeled_frames(catalog: Catalog, groups: GroupTable, *, sites: Sequence[str] = (), sources: Sequence[str] = ()) -> Iterator[LabeledImage]:
    """Frames with a current accepted annotation, in frame id order, as :class:`LabeledImage`."""
    stmt = _labeled(
        select(Frame.id, Frame.path, Frame.width, Frame.height, Frame.content_hash, Annotation.boxes), sites, sources
    ).order_by(Frame.id)
    last = None
    with catalog.session() as session:
        for frame_id, path, width, height, content_hash, boxes in session.execute(stmt.execution_options(yield_per=STREAM_BATCH)):
            if frame_id == last:
                raise CatalogError(f"frame {frame_id} has more than one current annotation; mark one is_current=false")
            last = frame_id
            yield LabeledImage(
                file_name=version_file_name(frame_id, path), width=width, height=height,
                boxes=tuple(Box.from_catalog(b) for b in boxes or ()), image_path=path, frame_id=frame_id,
                content_hash=content_hash, group=groups.group_of(frame_id),
            )


def export_dataset(
    catalog: Catalog,
    settings,
    *,
    name: str,
    formats: Sequence[str] | None = None,
    parent: str | None = None,
    images: str | None = None,
    on_bad: str | None = None,
    on_empty: str = "keep",
    classes: str | None = None,
    sites: Sequence[str] = (),
    sources: Sequence[str] = (),
    advance: Advance = _noop,
) -> dict:
    """Write dataset version ``name`` from the catalog's current labels and record it.

    Returns the version summary (see :class:`exporters.versions.VersionResult`) plus ``adopted``:
    true when a previous run wrote the folder but died before recording it (it is recorded now).
    """
    formats = list(formats or settings["export.formats"])
    export_dir = Path(settings["export.dir"]).expanduser()
    out_root = export_dir if export_dir.is_absolute() else settings.state_dir / export_dir
    with catalog.session() as session:
        existing = session.scalar(select(DatasetVersion).where(DatasetVersion.name == name))
        if existing is not None:
            raise ExportError(f"dataset version {name!r} already exists ({existing.path}, {existing.n_frames} frames); versions are immutable, pick a new --name")
        parent_row = None
        if parent:
            parent_row = session.scalar(select(DatasetVersion).where(DatasetVersion.name == parent))
            if parent_row is None:
                known = ", ".join(sorted(session.scalars(select(DatasetVersion.name)))) or "none yet"
                raise InputError(f"parent version {parent!r} is not in the catalog; known versions: {known}")
    if (out_root / name / "manifest.json").is_file():
        return _adopt(catalog, out_root / name, parent_row)
    class_names, class_source = resolve_class_map(settings, classes)
    filters = {"sites": list(sites), "sources": list(sources), "annotation": "is_current and status=accepted"}
    gap_s = settings["export.group_gap_s"]
    parent_dir = Path(parent_row.path) if parent_row is not None else None
    groups, split_of_group = plan_splits(
        catalog, class_names, settings["export.split"], seed=settings["export.seed"], gap_s=gap_s,
        fixed=parent_splits(parent_dir) if parent_dir is not None else None, sites=sites, sources=sources,
    )
    if len(groups) == 0:
        raise ExportError(f"no labeled frames to export{' with ' + str(filters) if sites or sources else ''}; pull or import labels first")
    options = VersionOptions(
        name=name, formats=formats, class_names=class_names, fractions=settings["export.split"],
        seed=settings["export.seed"], images=images or settings["export.images"], on_bad=on_bad or settings["export.on_bad"],
        on_empty=on_empty, filters={**filters, "group_gap_s": gap_s, "class_map": class_source},
        tool_version=tool_version(), parent=parent_dir,
    )
    result = write_version(lambda: iter_labeled_frames(catalog, groups, sites=sites, sources=sources), out_root, options,
                           split_of_group=split_of_group, advance=advance)
    with catalog.session() as session:
        session.add(DatasetVersion(
            name=name, parent_id=parent_row.id if parent_row is not None else None, path=result.path,
            formats=result.formats, n_frames=result.n_frames, n_boxes=result.n_boxes,
            manifest_sha256=result.manifest_sha256, filters=options.filters,
        ))
    return {**result.as_dict(), "parent": parent, "adopted": False, "class_map": class_source}


def _adopt(catalog: Catalog, version_dir: Path, parent_row) -> dict:
    import hashlib

    manifest = read_manifest(version_dir)
    sha = hashlib.sha256((version_dir / "manifest.json").read_bytes()).hexdigest()
    with catalog.session() as session:
        session.add(DatasetVersion(
            name=manifest["name"], parent_id=parent_row.id if parent_row is not None else None, path=str(version_dir),
            formats=manifest["formats"], n_frames=manifest["counts"]["frames"], n_boxes=manifest["counts"]["boxes"],
            manifest_sha256=sha, filters=manifest.get("filters") or {},
        ))
    return {"name": manifest["name"], "path": str(version_dir), "formats": manifest["formats"],
            "n_frames": manifest["counts"]["frames"], "n_boxes": manifest["counts"]["boxes"], "manifest_sha256": sha,
            "split_counts": manifest["splits"]["counts"], "problems": manifest["problems"], "diff": manifest["diff"],
            "dropped_frames": manifest["counts"]["dropped_frames"], "adopted": True}


def list_versions(catalog: Catalog) -> list[dict]:
    with catalog.session() as session:
        rows = session.scalars(select(DatasetVersion).order_by(DatasetVersion.id)).all()
        names = {row.id: row.name for row in rows}
        return [{"name": r.name, "parent": names.get(r.parent_id), "path": r.path, "formats": r.formats,
                 "frames": r.n_frames, "boxes": r.n_boxes, "created_at": r.created_at.isoformat(timespec="seconds")} for r in rows]
