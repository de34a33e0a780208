"""``beltcurate review``: the FiftyOne dataset of errors, its saved views and the app."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app


def _text(data: dict) -> str:
    lines = [
        f"review dataset {data['dataset']!r}: {data['frames']} frames ({data['labeled']} labeled), "
        f"{data['added']} added, {data['updated']} updated, {data['removed']} removed, {data['unchanged']} unchanged "
        f"in {data['seconds']:.1f} s",
        f"model {data['model_version'] or '(none scored yet)'}; ground truth from "
        + (f"dataset version {data['dataset_version']}" if data["dataset_version"] else "current annotations"),
    ]
    if data["mAP"] is not None:
        lines.append(f"mAP@[.5:.95] {data['mAP']:.3f} on {data['evaluated']} frames")
        # Classes first, then the micro/macro/weighted averages of the report.
        for label, row in sorted(data["per_class"].items(), key=lambda item: (item[0].endswith(" avg"), item[0])):
            lines.append(f"  {label:<16} precision {row['precision']:.2f}  recall {row['recall']:.2f}  support {int(row['support'])}")
    lines.append(f"similarity index: {data['similarity_frames']} frames; near-duplicates: {data['near_duplicate_frames']} frames")
    lines.append("saved views:")
    for name, count in data["views"].items():
        lines.append(f"  {name:<20} {count:>6} frames  {data['urls'][name]}")
    if data.get("sent"):
        sent = data["sent"]
        lines.append(f"sent {sent['frames']} frames of view {sent['view']!r} to Label Studio for relabeling")
    return "\n".join(lines)


@click.command("review")
@click.option("--version", "dataset_version", metavar="NAME", help="Ground truth from this dataset version (default: current annotations).")
@click.option("--model", "model_version", metavar="VERSION", help="Predictions of this model version (default: the newest scored one).")
@click.option("--launch", is_flag=True, help="Serve the FiftyOne app on 127.0.0.1 until Ctrl-C.")
@click.option("--port", type=int, help="App port (default: setting review.port).")
@click.option("--send-to-labelstudio", "send_view", metavar="VIEW", help="Push the frames of saved view VIEW to Label Studio for relabeling.")
@click.option("--force", is_flag=True, help="Re-run evaluation, views and the similarity index even if nothing changed.")
@json_option
@pass_app
def review(app, dataset_version, model_version, launch, port, send_view, force) -> None:
    """Build or update the FiftyOne dataset of the catalog and its saved error views.

    Incremental: only frames whose labels, predictions, scores or selection changed are
    rewritten. Prints the URL of each saved view: false-positives, missed-objects,
    poor-localization, class-confusions, uncertain-unlabeled, current-selection, near-duplicates.

    \b
    Examples:
      beltcurate review
      beltcurate review --model fcos-demo-r1 --launch
      beltcurate review --send-to-labelstudio false-positives
      beltcurate review --version v3 --json
    """
    from curation.review import launch_app, review as run_review, serve_until_interrupted
    from curation.runs import recorded_run

    args = dict(dataset_version=dataset_version, model_version=model_version, send_view=send_view, launch=launch)
    with recorded_run(app.catalog, "review", args) as run:
        data = run_review(app.catalog, app.settings, model_version=model_version, dataset_version=dataset_version,
                          send_view=send_view, port=port, force=force)
        run.counts = {key: data[key] for key in ("frames", "labeled", "added", "updated", "removed", "evaluated")}
    app.emit(data, _text)
    if launch:
        server = launch_app(app.settings, port=port)
        click.echo(f"FiftyOne app at {data['urls']['dataset']} (Ctrl-C to stop)", err=app.json_output)
        serve_until_interrupted(server)


commands = [review]
