"""The weekly loop and its records: refresh, status, report, unlock."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app


@click.command("refresh")
@click.option("--dry-run", is_flag=True, help="Ingest, score and select without pushing, pulling or exporting.")
@click.option("--strict-exit", is_flag=True, help="Exit 4 (not 0) when there was nothing to do.")
@json_option
@pass_app
def refresh_command(app, dry_run: bool, strict_exit: bool) -> None:
    """Run the whole loop once: ingest, score, pull, select, push, export, report.

    One refresh at a time (a catalog lock); a crashed or killed refresh is finished by the next
    one without duplicates. Exit codes: 0 success, 1 a stage failed (the message names it),
    3 another refresh is running, 4 nothing to do (only with --strict-exit).

    \b
    Examples:
      beltcurate --config /etc/beltcurate/beltcurate.toml refresh
      beltcurate refresh --dry-run --json
    \b
    cron (Mondays 03:00):
      0 3 * * 1  cd /srv/beltcurate && .venv/bin/beltcurate refresh >> refresh.log 2>&1
    """
    from curation.refresh import refresh

    def on_stage(name: str, stage: dict) -> None:
        if not app.json_output:
            click.echo(f"  {name:<7} {stage['status']:<8} {stage['seconds']:>7.1f} s  {stage.get('counts', {})}", err=True)

    summary = refresh(app.catalog, app.settings, dry_run=dry_run, on_stage=on_stage)
    app.emit(summary.as_dict(), lambda d: f"refresh run {d['run_id']}: {d['status']} in {d['seconds']:.0f} s; report: {d['report']}")
    if strict_exit and summary.status == "nothing_to_do":
        raise SystemExit(4)


@click.command("status")
@click.option("--limit", default=10, show_default=True, help="How many runs to show.")
@json_option
@pass_app
def status(app, limit: int) -> None:
    """Show the newest runs (refresh and other commands), their stages, and who holds the lock.

    \b
    Example:
      beltcurate status --limit 3
    """
    from curation.refresh import run_status

    def text(d: dict) -> str:
        lines = [f"lock: {'free' if d['lock'] is None else 'held by pid %(pid)s on %(host)s since %(since)s' % d['lock']}"]
        for r in d["runs"]:
            lines.append(f"#{r['id']:<5} {r['command']:<10} {r['status']:<14} {r['started_at']}  {r['seconds'] or '-'} s")
            for name, stage in (r["stages"] or {}).items():
                lines.append(f"        {name:<8} {stage.get('status')}  {stage.get('error') or stage.get('counts') or ''}")
            if r["error"]:
                lines.append(f"        error: {r['error']}")
        return "\n".join(lines)

    app.emit(run_status(app.catalog, limit), text)


@click.command("report")
@click.argument("run_id", type=int)
@json_option
@pass_app
def report(app, run_id: int) -> None:
    """(Re)build the HTML/Markdown report of a run under <state_dir>/runs/RUN_ID/.

    \b
    Example:
      beltcurate report 12 && xdg-open .beltcurate/runs/12/report.html
    """
    from curation.refresh import report_dir
    from curation.report import build_report

    files = build_report(app.catalog, run_id, report_dir(app.settings, run_id))
    app.emit(files.as_dict(), lambda d: f"report: {d['html']}")


@click.command("unlock")
@click.argument("name", default="refresh")
@json_option
@pass_app
def unlock(app, name: str) -> None:
    """Remove a run lock whose holder is gone from another host (a dead local holder is taken over automatically).

    \b
    Example:
      beltcurate unlock refresh
    """
    from curation.locks import force_release

    removed = force_release(app.catalog, name)
    app.emit({"name": name, "removed": removed}, lambda d: f"lock {d['name']}: {'removed' if d['removed'] else 'was not held'}")


commands = [refresh_command, status, report, unlock]
