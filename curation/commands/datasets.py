"""Dataset commands: import-labels, export, datasets."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app

FORMAT_NAMES = ("coco", "voc", "yolo")


def _split_formats(_ctx, _param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    formats = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(formats) - set(FORMAT_NAMES))
    if unknown or not formats:
        raise click.BadParameter(f"{', '.join(unknown) or value!r} not in {', '.join(FORMAT_NAMES)} (comma-separated)")
    return formats


@click.command("import-labels")
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), required=True, help="Layout of the dataset at PATH.")
@click.option("--name", help="Import name; annotations get source 'import:<name>' (default: the folder name).")
@click.option("--site", help="Site recorded for new frames (default: setting ingest.site).")
@click.option("--camera", help="Camera recorded for new frames (default: setting ingest.camera).")
@click.option("--on-bad", type=click.Choice(["drop", "fail"]), default="drop", show_default=True,
              help="Images with bad labels: import the frame without labels (reported), or stop before writing anything.")
@click.option("--workers", type=int, help="Decode processes (default: setting ingest.workers).")
@json_option
@pass_app
def import_labels(app, path, fmt, name, site, camera, on_bad, workers) -> None:
    """Import a dataset labeled before beltcurate (COCO, YOLO or Pascal VOC) as frames + annotations.

    Images are ingested (hashed, decoded, quarantined if broken); their boxes become the frames'
    current annotations unless a frame already has one. Re-running is a no-op.

    \b
    Examples:
      beltcurate import-labels ../shared/data/trashnet-west-416 --format yolo --name trashnet
      beltcurate import-labels exports/coco/train.json --format coco --on-bad fail --json
    """
    from curation.importing import import_labels as run_import
    from curation.progress import progress_bar
    from curation.runs import recorded_run

    args = dict(path=path, format=fmt, name=name, site=site, camera=camera, on_bad=on_bad)
    with recorded_run(app.catalog, "import-labels", args) as run, progress_bar(None, "import", enabled=app.show_progress) as advance:
        summary = run_import(app.catalog, app.settings, path, fmt, name=name, site=site, camera=camera,
                             on_bad=on_bad, workers=workers, advance=advance)
        run.counts = {k: v for k, v in summary.as_dict().items() if isinstance(v, int)}
    app.emit(summary.as_dict(), _import_text)


def _import_text(d: dict) -> str:
    lines = [
        f"{d['source']}: {d['images']} images -> {d['new_frames']} new frames, {d['existing_frames']} already in the catalog; "
        f"{d['annotations']} annotations ({d['boxes']} boxes), {d['current']} current, {d['already_imported']} already imported",
        f"  dropped {d['dropped']} (bad labels or missing image), quarantined {d['quarantined']}, "
        f"duplicate images {d['duplicate_images']} ({d['conflicting_duplicates']} with different labels)",
    ]
    lines += [f"  {kind}: {n}" for kind, n in d["problems"].items()]
    lines += [f"  e.g. {example}" for example in d["examples"][:5]]
    return "\n".join(lines)


@click.command("export")
@click.option("--name", required=True, help="Version name (a new folder under export.dir; versions are immutable).")
@click.option("--format", "formats", callback=_split_formats, help="Comma-separated: coco,yolo,voc (default: setting export.formats).")
@click.option("--parent", help="Earlier version to diff against; its frames keep their splits.")
@click.option("--images", type=click.Choice(["symlink", "hardlink", "copy"]), help="How images enter the version (default: setting export.images).")
@click.option("--on-bad", type=click.Choice(["drop", "fail"]), help="Frames with bad input: leave out (listed in problems.jsonl) or fail (default: setting export.on_bad).")
@click.option("--empty", "on_empty", type=click.Choice(["keep", "drop", "fail"]), default="keep", show_default=True,
              help="Frames labeled with no boxes: keep as negative examples, leave out, or fail.")
@click.option("--classes", type=click.Path(exists=True, dir_okay=False), help="Class map file (default: setting classes).")
@click.option("--site", "sites", multiple=True, help="Only frames of this site (repeatable).")
@click.option("--source", "sources", multiple=True, help="Only annotations from this source, e.g. labelstudio or import: (repeatable).")
@json_option
@pass_app
def export(app, name, formats, parent, images, on_bad, on_empty, classes, sites, sources) -> None:
    """Write an immutable dataset version from the current accepted labels.

    The version folder holds images (linked or copied), labels in each format, grouped and
    stratified train/val/test splits, manifest.json (frame ids, content hashes, class map, counts,
    parent, filters), SHA256SUMS and a diff against --parent. A failed export leaves nothing.

    \b
    Examples:
      beltcurate export --name v1 --format coco,yolo,voc
      beltcurate export --name v2 --parent v1 --images copy --on-bad fail --json
      (cd .beltcurate/datasets/v2 && sha256sum -c --quiet SHA256SUMS)
    """
    from curation.exporting import export_dataset
    from curation.progress import progress_bar
    from curation.runs import recorded_run

    args = dict(name=name, formats=formats, parent=parent, images=images, on_bad=on_bad, on_empty=on_empty,
                classes=classes, sites=list(sites), sources=list(sources))
    with recorded_run(app.catalog, "export", args) as run, progress_bar(None, "export", enabled=app.show_progress) as advance:
        result = export_dataset(app.catalog, app.settings, name=name, formats=formats, parent=parent, images=images,
                                on_bad=on_bad, on_empty=on_empty, classes=classes, sites=sites, sources=sources, advance=advance)
        run.counts = {"frames": result["n_frames"], "boxes": result["n_boxes"], "dropped_frames": result["dropped_frames"]}
    app.emit(result, _export_text)


def _export_text(d: dict) -> str:
    if d.get("adopted"):
        return f"recorded version {d['name']} left by an interrupted export: {d['n_frames']} frames at {d['path']}"
    splits = ", ".join(f"{s} {c['frames']}" for s, c in d["split_counts"].items())
    lines = [f"wrote {d['name']} ({', '.join(d['formats'])}): {d['n_frames']} frames, {d['n_boxes']} boxes ({splits}) "
             f"to {d['path']} in {d['seconds']:.1f} s"]
    if d["dropped_frames"] or d["problems"]:
        lines.append(f"  dropped {d['dropped_frames']} frame(s); problems: "
                     + (", ".join(f"{k} {v}" for k, v in d["problems"].items()) or "none") + " (see problems.jsonl)")
    if d.get("unknown_classes"):
        lines.append("  classes not in the class map (pass --classes or fix 'classes'): "
                     + ", ".join(f"{k} x{v}" for k, v in list(d["unknown_classes"].items())[:10]))
    if d["diff"] is not None:
        lines.append("  vs {parent}: +{added} added, -{removed} removed, {relabeled} relabeled".format(parent=d["parent"], **d["diff"]))
    return "\n".join(lines)


@click.command("datasets")
@json_option
@pass_app
def datasets(app) -> None:
    """List the exported dataset versions.

    \b
    Example:
      beltcurate datasets --json
    """
    from curation.exporting import list_versions

    versions = list_versions(app.catalog)
    app.emit({"versions": versions}, lambda d: "\n".join(
        f"{v['name']:<20} {v['frames']:>8} frames {v['boxes']:>9} boxes  parent={v['parent'] or '-'}  {v['path']}"
        for v in d["versions"]) or "no dataset versions yet; run 'beltcurate export --name v1'")


commands = [import_labels, export, datasets]
