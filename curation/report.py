"""The refresh report: what this run saw, picked and got back, as Markdown + HTML with plots.

Written under ``<state_dir>/runs/<run id>/`` (report.md, report.html, *.png). Everything comes
from the catalog, so a report can be rebuilt for any past run with ``beltcurate report RUN_ID``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from curation.catalog import (
    Annotation,
    Catalog,
    DatasetVersion,
    Frame,
    Prediction,
    Run,
    ScoringRun,
    Selection,
    SelectionItem,
)
from curation.errors import InputError

# Histograms of uncertainty use this many bins; more bins show more shape but get noisy at the
# few hundred frames a small site scores per week.
UNCERTAINTY_BINS = 30
# Predicted boxes below this confidence are left out of the class mix (detectors keep many
# low-score boxes for uncertainty; counting them would show the detector's noise, not the belt).
REPORT_MIN_SCORE = 0.5


@dataclass
class ReportFiles:
    directory: Path
    markdown: Path
    html: Path
    plots: list[Path]
    facts: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "markdown": str(self.markdown), "html": str(self.html),
                "plots": [str(p) for p in self.plots], "facts": self.facts}


def _frame_table(catalog: Catalog):
    import pandas as pd

    with catalog.session() as session:
        rows = session.execute(
            select(Prediction.frame_id, Prediction.uncertainty, Prediction.boxes, Prediction.scoring_run_id,
                   Prediction.created_at, Frame.site)
            .join(Frame, Frame.id == Prediction.frame_id)
        ).all()
    return pd.DataFrame(rows, columns=["frame_id", "uncertainty", "boxes", "scoring_run_id", "created_at", "site"])


def _window(catalog: Catalog, run_id: int) -> tuple[dt.datetime, dt.datetime, dt.datetime | None]:
    """(start, end) of the run and the start of the previous run of the same command."""
    with catalog.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise InputError(f"run {run_id} is not in the catalog; see 'beltcurate status' for run ids")
        previous = session.scalar(
            select(Run.started_at).where(Run.command == run.command, Run.id < run.id).order_by(Run.id.desc()).limit(1)
        )
        return run.started_at, run.finished_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), previous


def build_report(catalog: Catalog, run_id: int, out_dir: Path) -> ReportFiles:
    """Write report.md/report.html and plots for ``run_id`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    start, end, previous_start = _window(catalog, run_id)
    preds = _frame_table(catalog)
    this_run = preds[(preds.created_at >= start) & (preds.created_at <= end)] if len(preds) else preds
    before = preds[preds.created_at < start] if len(preds) else preds
    plots: list[Path] = []
    facts: dict[str, Any] = {"run_id": run_id, "window": [start.isoformat(), end.isoformat()]}

    # 1. uncertainty this run vs before
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if len(before):
        ax.hist(before.uncertainty, bins=UNCERTAINTY_BINS, alpha=0.5, density=True, label=f"before ({len(before)})")
    if len(this_run):
        ax.hist(this_run.uncertainty, bins=UNCERTAINTY_BINS, alpha=0.6, density=True, label=f"this run ({len(this_run)})")
    ax.set_xlabel("image uncertainty (higher = less sure)")
    ax.set_ylabel("density")
    ax.set_title("Uncertainty of scored frames")
    ax.legend()
    plots.append(_save(fig, out_dir / "uncertainty.png"))
    facts["scored_this_run"] = int(len(this_run))
    facts["mean_uncertainty_this_run"] = float(this_run.uncertainty.mean()) if len(this_run) else None
    facts["mean_uncertainty_before"] = float(before.uncertainty.mean()) if len(before) else None

    # 2. class mix: predictions of this run, the newest selection, labels that arrived this run
    with catalog.session() as session:
        selection = session.scalars(select(Selection).order_by(Selection.id.desc()).limit(1)).first()
        selected_ids = set(session.scalars(select(SelectionItem.frame_id).where(SelectionItem.selection_id == selection.id))) if selection else set()
        new_labels = session.execute(
            select(Annotation.boxes, Annotation.lead_time_s, Annotation.created_at, Annotation.annotator)
            .where(Annotation.is_current.is_(True), Annotation.status == "accepted",
                   Annotation.source == "labelstudio")
        ).all()
        versions = session.scalars(select(DatasetVersion).order_by(DatasetVersion.id)).all()
        version_rows = [(v.name, v.n_frames, v.n_boxes, v.created_at, v.path) for v in versions]

    def class_counts(box_lists) -> dict[str, int]:
        counts: dict[str, int] = {}
        for boxes in box_lists:
            for box in boxes or []:
                if box.get("score", 1.0) >= REPORT_MIN_SCORE:
                    counts[box["label"]] = counts.get(box["label"], 0) + 1
        return counts

    mix = pd.DataFrame({
        "predicted (this run)": pd.Series(class_counts(this_run.boxes), dtype=float),
        "selected": pd.Series(class_counts(preds[preds.frame_id.isin(selected_ids)].boxes) if len(preds) else {}, dtype=float),
        "new labels": pd.Series(class_counts(b for b, _, c, _ in new_labels if previous_start is None or c >= previous_start), dtype=float),
    }).fillna(0)
    if len(mix):
        share = mix / mix.sum().replace(0, 1)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        share.plot.bar(ax=ax)
        ax.set_ylabel("share of boxes")
        ax.set_title("Class mix: predictions, selection, new labels")
        plots.append(_save(fig, out_dir / "class_mix.png"))
    facts["class_mix"] = {k: {c: int(n) for c, n in v.items()} for k, v in mix.to_dict().items()}

    # 3. per-site drift of mean uncertainty across scoring runs
    if len(preds):
        drift = preds.groupby(["scoring_run_id", "site"]).uncertainty.mean().unstack("site")
        fig, ax = plt.subplots(figsize=(6, 3.2))
        drift.plot(ax=ax, marker="o")
        ax.set_xlabel("scoring run")
        ax.set_ylabel("mean uncertainty")
        ax.set_title("Per-site drift")
        plots.append(_save(fig, out_dir / "site_drift.png"))
        facts["site_drift"] = {str(site): {str(k): round(float(v), 4) for k, v in col.dropna().items()} for site, col in drift.items()}

    # 4. labeling throughput and lead time
    if new_labels:
        labels = pd.DataFrame(new_labels, columns=["boxes", "lead_time_s", "created_at", "annotator"])
        per_day = labels.set_index("created_at").resample("D").size()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        per_day.plot(ax=axes[0], marker="o")
        axes[0].set_title("Frames labeled per day")
        lead_times = pd.to_numeric(labels.lead_time_s, errors="coerce").dropna()
        if len(lead_times):
            lead_times.plot.hist(ax=axes[1], bins=20)
        else:
            axes[1].text(0.5, 0.5, "no lead times recorded", ha="center", va="center", transform=axes[1].transAxes)
        axes[1].set_title("Lead time per frame (s)")
        plots.append(_save(fig, out_dir / "labeling.png"))
        facts["labeled_total"] = int(len(labels))
        facts["labeled_since_previous_run"] = int((labels.created_at >= previous_start).sum()) if previous_start else int(len(labels))
        facts["median_lead_time_s"] = float(labels.lead_time_s.median()) if labels.lead_time_s.notna().any() else None

    # 5. dataset version diff (newest vs its parent, from the manifest written by the exporter)
    facts["dataset_versions"] = [{"name": n, "frames": f, "boxes": b, "created_at": c.isoformat()} for n, f, b, c, _ in version_rows]
    if version_rows:
        diff_path = Path(version_rows[-1][4]) / "diff.json"
        if diff_path.is_file():
            facts["newest_version_diff"] = {k: (len(v) if isinstance(v, list) else v)
                                            for k, v in json.loads(diff_path.read_text()).items()}

    with catalog.session() as session:
        run = session.get(Run, run_id)
        facts["status"] = run.status
        if run.status == "running":  # built by the refresh's own report stage
            others = [st.get("status") for name, st in (run.stages or {}).items() if name != "report"]
            facts["status"] = "all stages finished" if all(st in ("done", "skipped") for st in others) else "in progress"
        facts["stages"] = run.stages
        facts["scoring_runs"] = session.scalar(select(func.count()).select_from(ScoringRun))

    markdown = _markdown(facts, plots)
    md_path = out_dir / "report.md"
    md_path.write_text(markdown)
    html_path = out_dir / "report.html"
    html_path.write_text(_html(facts, plots))
    (out_dir / "facts.json").write_text(json.dumps(facts, indent=2, default=str))
    return ReportFiles(out_dir, md_path, html_path, plots, facts)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _stage_rows(facts: dict) -> list[tuple[str, str, str]]:
    rows = []
    for name, stage in (facts.get("stages") or {}).items():
        counts = ", ".join(f"{k}={v}" for k, v in (stage.get("counts") or {}).items())
        rows.append((name, f"{stage.get('status')} ({stage.get('seconds', 0):.1f} s)", counts))
    return rows


def _markdown(facts: dict, plots: list[Path]) -> str:
    lines = [f"# beltcurate run {facts['run_id']} — {facts['status']}", "", f"Window: {facts['window'][0]} → {facts['window'][1]} (UTC)", ""]
    lines += ["| stage | status | counts |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in _stage_rows(facts)]
    lines += ["", f"- frames scored this run: {facts['scored_this_run']}",
              f"- mean uncertainty this run: {_fmt(facts['mean_uncertainty_this_run'])} (before: {_fmt(facts['mean_uncertainty_before'])})"]
    if "labeled_total" in facts:
        lines += [f"- labels from Label Studio: {facts['labeled_total']} in total, {facts['labeled_since_previous_run']} since the previous run; "
                  f"median lead time {_fmt(facts['median_lead_time_s'])} s"]
    if facts.get("dataset_versions"):
        newest = facts["dataset_versions"][-1]
        lines += [f"- newest dataset version: {newest['name']} ({newest['frames']} frames, {newest['boxes']} boxes)"]
        if "newest_version_diff" in facts:
            lines += [f"- diff vs parent: {facts['newest_version_diff']}"]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _html(facts: dict, plots: list[Path]) -> str:
    rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>" for a, b, c in _stage_rows(facts))
    images = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem.replace("_", " ")}</figcaption></figure>' for p in plots)
    summary = html.escape(json.dumps({k: v for k, v in facts.items() if k not in ("stages", "site_drift")}, indent=2, default=str))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>beltcurate run "
        f"{facts['run_id']}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}"
        f"figure{{display:inline-block;margin:8px}}</style></head><body><h1>beltcurate run {facts['run_id']} — "
        f"{html.escape(str(facts['status']))}</h1><table><tr><th>stage</th><th>status</th><th>counts</th></tr>{rows}</table>"
        f"{images}<h2>Facts</h2><pre>{summary}</pre></body></html>\n"
    )
