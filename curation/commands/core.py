"""Foundation commands: config, db, synth, ingest, quarantine."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app


@click.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@json_option
@pass_app
def config_show(app) -> None:
    """Print every setting, its value and where it came from (secrets masked).

    \b
    Sources, lowest to highest: default < beltcurate.toml < BELTCURATE_* environment.
    Example:
      BELTCURATE_SELECT_BUDGET=200 beltcurate config show --json
    """
    rows = app.settings.rows()
    data = {"config_file": str(app.settings.config_path) if app.settings.config_path else None, "settings": rows}

    def text(d: dict) -> str:
        width = max(len(r["name"]) for r in rows)
        lines = [f"config file: {d['config_file'] or '(none; defaults + environment)'}"]
        lines += [f"{r['name']:<{width}}  {r['value']!s:<40}  [{r['source']}]" for r in rows]
        return "\n".join(lines)

    app.emit(data, text)


@click.group("db")
def db_group() -> None:
    """Catalog database maintenance."""


@db_group.command("upgrade")
@json_option
@pass_app
def db_upgrade(app) -> None:
    """Apply catalog migrations up to the newest (also done automatically on first use).

    \b
    Example:
      BELTCURATE_CATALOG_URL=postgresql+psycopg://beltcurate@127.0.0.1/beltcurate beltcurate db upgrade
    """
    from curation.catalog import current_revision

    catalog = app.catalog  # opening migrates
    app.emit({"revision": current_revision(catalog.engine)}, lambda d: f"catalog at revision {d['revision']}")


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--frames", default=1000, show_default=True, help="Number of frames to write.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed -> same bytes).")
@click.option("--width", default=320, show_default=True)
@click.option("--height", default=240, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Processes rendering sequences in parallel.")
@json_option
@pass_app
def synth(app, out: str, frames: int, seed: int, width: int, height: int, workers: int) -> None:
    """Write synthetic belt frames (sequences, 8 classes, 3 sites) with COCO ground truth.

    \b
    Example:
      beltcurate synth demo/frames --frames 500 --seed 0
      beltcurate ingest demo/frames/images --site-from-path
    """
    from curation.progress import progress_bar
    from curation.synth import SynthConfig, generate

    config = SynthConfig(frames=frames, seed=seed, width=width, height=height, workers=workers)
    with progress_bar(frames, "synth", enabled=app.show_progress) as advance:
        summary = generate(out, config, advance=advance)
    app.emit(
        summary.as_dict(),
        lambda d: f"wrote {d['frames']} frames ({d['sequences']} sequences, {d['objects']} objects) to {d['out']} "
        f"in {d['seconds']:.1f} s ({d['frames_per_s']} frames/s)",
    )


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True))
@click.option("--site", help="Site of these frames (default: setting ingest.site).")
@click.option("--line", help="Belt line (default: setting ingest.line).")
@click.option("--camera", help="Camera (default: setting ingest.camera).")
@click.option("--site-from-path", is_flag=True,
              help="Take site and camera from the first two folders under PATH (PATH/<site>/<camera>/...).")
@click.option("--workers", type=int, help="Decode processes (default: setting ingest.workers).")
@click.option("--video-stride", type=int, help="Keep every Nth MP4 frame (default: setting ingest.video_stride).")
@json_option
@pass_app
def ingest(app, path, site, line, camera, site_from_path, workers, video_stride) -> None:
    """Scan PATH for JPEG/PNG/WebP/MP4 and add new frames to the catalog.

    Exact duplicates (same bytes) are stored once; re-ingesting is a no-op. Broken files
    (zero-byte, truncated, not an image, huge, unreadable) are quarantined with a reason and the
    run goes on; see 'beltcurate quarantine'.

    \b
    Examples:
      beltcurate ingest /mnt/belt/west/cam1 --site west --line L1 --camera cam1
      beltcurate ingest demo/frames/images --site-from-path --json
    """
    from curation.ingest import ingest_tree
    from curation.progress import progress_bar
    from curation.runs import recorded_run

    settings = app.settings
    args = dict(path=path, site=site, line=line, camera=camera, site_from_path=site_from_path)
    with recorded_run(app.catalog, "ingest", args) as run, progress_bar(None, "ingest", enabled=app.show_progress) as advance:
        summary = ingest_tree(
            app.catalog, settings, path, site=site, line=line, camera=camera, site_from_path=site_from_path,
            workers=workers, video_stride=video_stride, advance=advance,
        )
        run.counts = summary.as_dict()
    app.emit(
        summary.as_dict(),
        lambda d: f"scanned {d['scanned']}: {d['new']} new, {d['duplicate']} duplicate, "
        f"{d['already_known']} already known, {d['quarantined']} quarantined "
        f"({d['files_per_s']} files/s)"
        + "".join(f"\n  quarantined {n} x {reason}" for reason, n in sorted(d["quarantine_reasons"].items())),
    )


@click.command("quarantine")
@click.option("--limit", default=50, show_default=True)
@json_option
@pass_app
def quarantine(app, limit: int) -> None:
    """List quarantined files with their reasons.

    \b
    Example:
      beltcurate quarantine --json
    """
    from curation.ingest import quarantine_report

    report = quarantine_report(app.catalog, limit=limit)
    app.emit(
        report,
        lambda d: f"{d['total']} quarantined file(s)"
        + "".join(f"\n  {r['reason']:<10} {r['path']}  ({r['detail']})" for r in d["files"]),
    )


commands = [config_group, db_group, synth, ingest, quarantine]
