"""Label Studio commands: push, pull, and a local server (labelstudio start|stop|status)."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app


@click.command("push")
@click.option("--selection", "selection_id", type=int, help="Selection id (default: the newest selection).")
@click.option("--project", help="Project title (default: setting labelstudio.project).")
@click.option("--chunk-size", type=int, help="Tasks per import call (default: setting labelstudio.chunk_size).")
@json_option
@pass_app
def push(app, selection_id, project, chunk_size) -> None:
    """Push a selection to Label Studio as tasks with the detector's pre-annotations.

    Each task carries frame_id, site, camera, captured_at and the selection reason; predictions
    carry per-box scores, the model version and the frame's uncertainty. Idempotent: frames
    already in the project are never imported twice, also after a crash mid-push.

    \b
    Examples:
      beltcurate push
      beltcurate push --selection 3 --json
      BELTCURATE_LABELSTUDIO_TOKEN=... BELTCURATE_LABELSTUDIO_URL=http://ls:8080 beltcurate push
    """
    from curation.labelstudio import LabelStudioConfig, push_selection
    from curation.progress import progress_bar
    from curation.runs import recorded_run

    settings = app.settings.with_overrides(labelstudio__project=project, labelstudio__chunk_size=chunk_size)
    config = LabelStudioConfig.from_settings(settings)
    with recorded_run(app.catalog, "push", dict(selection=selection_id, project=config.project)) as run, \
            progress_bar(None, "push", enabled=app.show_progress) as advance:
        summary = push_selection(app.catalog, config, selection_id, advance=advance)
        run.counts = summary.as_dict()
    app.emit(
        summary.as_dict(),
        lambda d: f"project {d['project']!r} (id {d['project_id']}): {d['imported']} imported, "
        f"{d['already_present']} already there, {d['recovered']} recovered, {d['deleted_on_server']} deleted on the "
        f"server (not re-pushed) of {d['requested']} in {d['seconds']:.1f} s; model_version {d['model_version']}",
    )


@click.command("pull")
@click.option("--full", is_flag=True, help="Reconcile the whole project (also catches deleted tasks).")
@json_option
@pass_app
def pull(app, full) -> None:
    """Pull annotations from Label Studio into the catalog.

    Incremental (tasks updated since the last pull); every labelstudio.reconcile_every-th pull,
    and with --full, reconciles the whole project. Invalid regions (outside the image, no area,
    unknown label) are dropped and reported; skipped tasks and deletions are recorded.

    \b
    Examples:
      beltcurate pull
      beltcurate pull --full --json
    """
    from curation.labelstudio import LabelStudioConfig, pull_annotations
    from curation.progress import progress_bar
    from curation.runs import recorded_run

    config = LabelStudioConfig.from_settings(app.settings)
    with recorded_run(app.catalog, "pull", dict(full=full, project=config.project)) as run, \
            progress_bar(None, "pull", enabled=app.show_progress) as advance:
        summary = pull_annotations(app.catalog, config, full=full, advance=advance)
        run.counts = {k: v for k, v in summary.as_dict().items() if k != "problems"}

    def text(d: dict) -> str:
        lines = [f"{d['mode']} pull of {', '.join(d['projects'])}: {d['tasks_seen']} tasks, "
                 f"{d['annotations_new']} new / {d['annotations_updated']} updated / {d['annotations_deleted']} deleted "
                 f"annotations, {d['labeled']} labeled, {d['skipped']} skipped, {d['tasks_deleted']} tasks deleted, "
                 f"{d['rejected_regions']} regions rejected, {d['disagreements']} disagreements in {d['seconds']:.1f} s"]
        lines += [f"  {p['where']}: {p['kind']}: {p['detail']}" for p in d["problems"][:20]]
        return "\n".join(lines)

    app.emit(summary.as_dict(), text)


@click.group("labelstudio")
def labelstudio_group() -> None:
    """Run a local Label Studio server (127.0.0.1, preset admin and API token)."""


def _status_text(d: dict) -> str:
    if not d.get("up"):
        return f"Label Studio not running (state: {d['state']}; folder {d['root']})"
    return (f"Label Studio {d.get('version')} up at {d['url']} (pid {d['pid']})\n"
            f"  login: {d['username']} (password and API token in {d['credentials_file']})\n  log: {d['log']}")


@labelstudio_group.command("start")
@click.option("--port", type=int, help="Port (default: the port of labelstudio.url).")
@json_option
@pass_app
def labelstudio_start(app, port) -> None:
    """Start Label Studio from .venv-labelstudio on the port of labelstudio.url.

    Data, credentials (mode 0600) and the log live in <state_dir>/labelstudio; push and pull find
    the token there. Frames below labelstudio.image_root are served as local files.

    \b
    Examples:
      make labelstudio-venv && beltcurate labelstudio start
      BELTCURATE_LABELSTUDIO_URL=http://127.0.0.1:8081 beltcurate labelstudio start --json
    """
    from curation.labelstudio import start_local_server

    app.emit(start_local_server(app.settings, port=port), _status_text)


@labelstudio_group.command("stop")
@json_option
@pass_app
def labelstudio_stop(app) -> None:
    """Stop the local Label Studio server (by its PID).

    \b
    Example:
      beltcurate labelstudio stop
    """
    from curation.labelstudio import stop_local_server

    app.emit(stop_local_server(app.settings), lambda d: "stopped" if d["stopped"] else "not running")


@labelstudio_group.command("status")
@json_option
@pass_app
def labelstudio_status(app) -> None:
    """Show whether the local Label Studio server is up, its URL and login.

    \b
    Example:
      beltcurate labelstudio status --json
    """
    from curation.labelstudio import local_server_status

    app.emit(local_server_status(app.settings), _status_text)


commands = [push, pull, labelstudio_group]
