"""The select command: pick the frames worth labeling."""

from __future__ import annotations

import click

from curation.cli import json_option, pass_app

# Shown in --help without importing the registry (kept equal to STRATEGIES by tests/test_selecting_cli.py).
STRATEGY_NAMES = ("balance", "cluster", "coreset", "hybrid", "random", "uncertainty")


@click.command("select")
@click.option("--budget", type=int, help="Frames to select (default: setting select.budget).")
@click.option("--strategy", help=f"One of {', '.join(STRATEGY_NAMES)} (default: setting select.strategy).")
@click.option("--seed", type=int, help="Random seed (default: setting select.seed); same seed, same selection.")
@click.option("--model-version", help="Predictions of this model version (default: the newest with predictions).")
@click.option("--dry-run", is_flag=True, help="Compute and print the selection; write nothing.")
@json_option
@pass_app
def select_command(app, budget, strategy, seed, model_version, dry_run) -> None:
    """Select the unlabeled frames most worth labeling, each with a reason.

    Frames already labeled or pushed to Label Studio are never selected. The default strategy,
    hybrid, drops near-duplicates, keeps the most uncertain frames, spreads them away from what is
    already labeled, reserves a quota for rare classes and adds a few random frames. The result
    goes to the catalog (for 'beltcurate push') and to state_dir/selections/<name>.csv and .json.

    \b
    Examples:
      beltcurate select --budget 500
      beltcurate select --budget 200 --strategy coreset --dry-run
      beltcurate select --budget 500 --seed 7 --json
    """
    from curation.runs import recorded_run
    from curation.selecting import select_from_catalog

    def run():
        return select_from_catalog(app.catalog, app.settings, budget=budget, strategy=strategy,
                                   model_version=model_version, dry_run=dry_run, seed=seed)

    if dry_run:
        summary = run()
    else:
        args = dict(budget=budget, strategy=strategy, seed=seed, model_version=model_version)
        with recorded_run(app.catalog, "select", args) as record:
            summary = run()
            record.counts = {k: v for k, v in summary.as_dict().items() if k in ("selected", "eligible", "pool", "excluded")}
    app.emit(summary.as_dict(), _text)


def _text(d: dict) -> str:
    head = "would select" if d["dry_run"] else f"selection {d['name']} (id {d['selection_id']}):"
    excluded = ", ".join(f"{n} {why}" for why, n in d["excluded"].items() if n)
    lines = [
        f"{head} {d['selected']} of {d['eligible']} eligible frames with {d['strategy']} "
        f"(model {d['model_version']}, seed {d['seed']}, {d['seconds']['total']:.1f} s)",
        f"  excluded: {excluded or 'none'}; {d['labeled_seeds']} labeled frames seed diversity",
    ]
    if d["stages"]:
        lines.append("  stages: " + ", ".join(f"{n} {stage}" for stage, n in d["stages"].items()))
    if d["near_duplicates_collapsed"]:
        lines.append(f"  near-duplicates collapsed: {d['near_duplicates_collapsed']}")
    for item in d["items"]:
        lines.append(f"  #{item['rank']:<4} frame {item['frame_id']:<8} {item['reason']}")
    if d["selected"] > len(d["items"]):
        lines.append(f"  ... {d['selected'] - len(d['items'])} more")
    if d["files"]:
        lines.append(f"  wrote {d['files']['csv']} and {d['files']['json']}")
    return "\n".join(lines)


commands = [select_command]
