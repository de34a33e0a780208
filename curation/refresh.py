"""The weekly refresh: ingest -> score -> pull -> select -> push -> export -> report.

Each stage is the library function of its own command; this module only sequences them under a
catalog lock, records every stage in the run row (status, counts, seconds, error) as it goes,
and writes the report. Every stage is idempotent, so rerunning after a crash at any point
finishes the work without duplicate frames, predictions, tasks or versions:

- ingest/score skip what the catalog already has;
- select reuses a selection an interrupted refresh made but did not finish pushing (state key
  ``refresh.pending_selection``), so a crash between select and push cannot select twice;
- push skips frames already present in the Label Studio project (checked on the server);
- export is skipped when no labels changed since the newest version, and adopts a version
  folder that was written completely but not recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select

from curation import locks
from curation.catalog import Annotation, Catalog, DatasetVersion, LabelTask, Run, Selection, utcnow
from curation.errors import CurationError
from curation.runs import recorded_run

log = logging.getLogger(__name__)

STAGES = ("ingest", "score", "pull", "select", "push", "export", "report")
# Stages whose finished work an interrupted run hands to the run that resumes it: selecting and
# pushing again would label a second batch in one cycle. The other stages are simply rerun (they
# find nothing left to do, or finish what the interrupted run began).
RESUMED_STAGES = ("select", "push")
LOCK_NAME = "refresh"


class StageError(CurationError):
    """A refresh stage failed; the message names the stage, the run is marked failed."""


@dataclass
class RefreshContext:
    catalog: Catalog
    settings: Any
    run: Run
    dry_run: bool = False
    results: dict[str, dict] = field(default_factory=dict)


@dataclass
class RefreshSummary:
    run_id: int
    status: str  # success, nothing_to_do, failed
    stages: dict[str, dict]
    report: str | None
    seconds: float

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "stages": self.stages, "report": self.report,
                "seconds": round(self.seconds, 3)}


# ----------------------------------------------------------------------------- stages
def stage_ingest(ctx: RefreshContext) -> dict:
    from curation.ingest import IngestSummary, ingest_tree

    inputs = ctx.settings["refresh.inputs"]
    if not inputs:
        return {"skipped_because": "refresh.inputs is empty"}
    total = IngestSummary()
    for raw in inputs:
        path = ctx.settings.resolve_path(raw)
        total.add(ingest_tree(ctx.catalog, ctx.settings, path, site_from_path=ctx.settings["refresh.site_from_path"]))
    return {k: v for k, v in total.as_dict().items() if k in ("scanned", "new", "duplicate", "quarantined")}


def stage_score(ctx: RefreshContext) -> dict:
    checkpoint = ctx.settings["model.checkpoint"]
    if not checkpoint:
        return {"skipped_because": "model.checkpoint is not set"}
    from curation.scoring import score_frames

    summary = score_frames(ctx.catalog, ctx.settings, ctx.settings.resolve_path(checkpoint),
                           engine=ctx.settings["score.engine"])
    data = summary.as_dict() if hasattr(summary, "as_dict") else dict(summary.__dict__)
    return {k: data[k] for k in ("model_version", "scored", "failed", "frames_per_s") if k in data}


def _labelstudio_configured(ctx: RefreshContext) -> str | None:
    from curation.labelstudio import as_config

    if not as_config(ctx.settings).token:
        return "no Label Studio token (set BELTCURATE_LABELSTUDIO_TOKEN or run 'beltcurate labelstudio start')"
    return None


def stage_pull(ctx: RefreshContext) -> dict:
    if reason := _labelstudio_configured(ctx):
        return {"skipped_because": reason}
    with ctx.catalog.session() as session:
        if session.scalar(select(func.count()).select_from(LabelTask)) == 0:
            return {"skipped_because": "nothing pushed to Label Studio yet"}
    from curation.labelstudio import pull_annotations

    data = _plain(pull_annotations(ctx.catalog, ctx.settings))
    data.pop("problems", None)  # kept in the annotation rows; the run record stays small
    return data


def stage_select(ctx: RefreshContext) -> dict:
    from curation.selecting import select_from_catalog

    summary = select_from_catalog(ctx.catalog, ctx.settings, budget=ctx.settings["select.budget"],
                                  strategy=ctx.settings["select.strategy"], dry_run=ctx.dry_run)
    data = _plain(summary)
    return {k: data[k] for k in ("selection_id", "name", "selected", "eligible", "strategy") if k in data}


def stage_push(ctx: RefreshContext) -> dict:
    selected = ctx.results.get("select", {})
    if not selected.get("selection_id"):
        return {"skipped_because": "no selection to push"}
    if reason := _labelstudio_configured(ctx):
        return {"skipped_because": reason}
    from curation.labelstudio import push_selection

    summary = _plain(push_selection(ctx.catalog, ctx.settings, selection_id=selected["selection_id"]))
    summary.pop("problems", None)
    return summary


def labels_changed_since_last_version(catalog: Catalog) -> tuple[bool, str | None, int]:
    """(labels changed since the newest version?, its name, the number of the next version).

    Any annotation row touched after the newest version counts: new, edited, deleted or skipped.
    """
    with catalog.session() as session:
        newest = session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc()).limit(1)).first()
        n_versions = session.scalar(select(func.count()).select_from(DatasetVersion))
        query = select(func.count()).select_from(Annotation)
        if newest is not None:
            query = query.where(Annotation.updated_at > newest.created_at)
        else:
            query = query.where(Annotation.is_current.is_(True))
        return session.scalar(query) > 0, (newest.name if newest else None), n_versions + 1


def stage_export(ctx: RefreshContext) -> dict:
    changed, parent, number = labels_changed_since_last_version(ctx.catalog)
    if not changed:
        return {"skipped_because": "no new labels since the newest dataset version", "newest": parent}
    if ctx.dry_run:
        return {"would_export": f"v{number:04d}", "parent": parent}
    from curation.exporting import export_dataset

    name = f"{ctx.settings['refresh.version_prefix']}{number:04d}"
    result = export_dataset(ctx.catalog, ctx.settings, name=name, parent=parent)
    return {k: result[k] for k in ("name", "n_frames", "n_boxes", "manifest_sha256", "adopted", "parent") if k in result}


def stage_report(ctx: RefreshContext) -> dict:
    from curation.report import build_report

    out = ctx.settings.state_dir / "runs" / str(ctx.run.id)
    _persist_stages(ctx)
    files = build_report(ctx.catalog, ctx.run.id, out)
    return {"html": str(files.html), "markdown": str(files.markdown), "plots": len(files.plots)}


STAGE_FUNCTIONS: dict[str, Callable[[RefreshContext], dict]] = {
    "ingest": stage_ingest,
    "score": stage_score,
    "pull": stage_pull,
    "select": stage_select,
    "push": stage_push,
    "export": stage_export,
    "report": stage_report,
}


def _plain(summary) -> dict:
    if isinstance(summary, dict):
        return summary
    if hasattr(summary, "as_dict"):
        return summary.as_dict()
    return {k: v for k, v in vars(summary).items() if not k.startswith("_")}


def _persist_stages(ctx: RefreshContext) -> None:
    """Write the stage table now, so `beltcurate status` shows progress of a running refresh."""
    with ctx.catalog.session() as session:
        row = session.get(Run, ctx.run.id)
        row.stages = dict(ctx.run.stages)


def _close_interrupted_runs(catalog: Catalog, current_run_id: int) -> dict[str, dict]:
    """Mark refresh runs left 'running' (we hold the lock, so their process died) as failed, and
    return the finished RESUMED_STAGES of the newest refresh if it did not succeed: this run
    completes that cycle instead of starting a new one."""
    with catalog.session() as session:
        for row in session.scalars(select(Run).where(Run.command == "refresh", Run.status == "running", Run.id != current_run_id)):
            row.status = "failed"
            row.error = "interrupted: the process ended without finishing (killed or crashed); resumed by run %d" % current_run_id
            row.finished_at = utcnow()
            log.warning("refresh run %s was interrupted; run %s finishes its work", row.id, current_run_id)
        session.flush()
        previous = None
        for row in session.scalars(select(Run).where(Run.command == "refresh", Run.id < current_run_id).order_by(Run.id.desc())):
            refused = "already running" in (row.error or "")
            if not refused and not (row.args or {}).get("dry_run"):
                previous = row
                break
        if previous is None or previous.status != "failed":
            return {}
        return {name: {**stage, "resumed_from": stage.get("resumed_from", previous.id)}
                for name, stage in (previous.stages or {}).items()
                if name in RESUMED_STAGES and stage.get("status") == "done"}


def refresh(catalog: Catalog, settings, *, dry_run: bool = False, stages: tuple[str, ...] = STAGES,
            on_stage: Callable[[str, dict], None] | None = None) -> RefreshSummary:
    """Run the loop once under the refresh lock; raises StageError naming the failed stage."""
    started = time.perf_counter()
    args = {"dry_run": dry_run, "stages": list(stages)}
    with recorded_run(catalog, "refresh", args) as run:
        run.stages = {}
        with locks.held(catalog, LOCK_NAME, run_id=run.id):
            inherited = {} if dry_run else _close_interrupted_runs(catalog, run.id)
            ctx = RefreshContext(catalog, settings, run, dry_run=dry_run)
            # Record inherited stages before anything runs: if this run dies too, the next one
            # must still know that this cycle already selected and pushed.
            run.stages = {name: inherited.get(name, {"status": "pending"}) for name in stages}
            _persist_stages(ctx)
            for name in stages:
                if name in inherited:
                    ctx.results[name] = inherited[name].get("counts", {})
                    if on_stage:
                        on_stage(name, run.stages[name])
                    continue
                if dry_run and name in ("push", "pull"):
                    ctx.results[name] = {"skipped_because": "dry run"}
                    run.stages[name] = {"status": "skipped", "counts": ctx.results[name], "seconds": 0.0}
                    continue
                t0 = time.perf_counter()
                run.stages[name] = {"status": "running", "started_at": utcnow().isoformat()}
                _persist_stages(ctx)
                try:
                    counts = STAGE_FUNCTIONS[name](ctx)
                except CurationError as exc:
                    run.stages[name] = {"status": "failed", "error": str(exc), "seconds": round(time.perf_counter() - t0, 3)}
                    raise StageError(f"refresh failed in stage '{name}': {exc}") from exc
                except Exception as exc:
                    run.stages[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                        "seconds": round(time.perf_counter() - t0, 3)}
                    raise StageError(f"refresh failed in stage '{name}': {type(exc).__name__}: {exc}") from exc
                ctx.results[name] = counts
                status = "skipped" if "skipped_because" in counts else "done"
                run.stages[name] = {"status": status, "counts": counts, "seconds": round(time.perf_counter() - t0, 3)}
                if on_stage:
                    on_stage(name, run.stages[name])
            nothing = (ctx.results.get("ingest", {}).get("new", 0) == 0
                       and not ctx.results.get("pull", {}).get("new_annotations")
                       and "skipped_because" in ctx.results.get("export", {"skipped_because": True}))
            run.status = "nothing_to_do" if nothing else "success"
            run.counts = {name: ctx.results.get(name, {}) for name in stages}
    report = ctx.results.get("report", {}).get("html")
    return RefreshSummary(run.id, run.status, run.stages, report, time.perf_counter() - started)


def run_status(catalog: Catalog, limit: int = 10) -> dict:
    """The newest runs (any command) with their stage tables, and the lock holder if any."""
    from curation.catalog import Lock

    with catalog.session() as session:
        runs = session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)).all()
        lock = session.get(Lock, LOCK_NAME)
        return {
            "lock": None if lock is None else {"pid": lock.owner_pid, "host": lock.host, "since": lock.acquired_at.isoformat()},
            "runs": [
                {"id": r.id, "command": r.command, "status": r.status, "started_at": r.started_at.isoformat(),
                 "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                 "seconds": round((r.finished_at - r.started_at).total_seconds(), 1) if r.finished_at else None,
                 "stages": r.stages, "error": r.error}
                for r in runs
            ],
        }


def report_dir(settings, run_id: int) -> Path:
    return settings.state_dir / "runs" / str(run_id)
