"""beltcurate select: JSON summary, text output, dry run, errors, run record."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select

from curation.catalog import Catalog, Run, Selection
from curation.cli import main
from tests.test_selecting import populate


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_select_json_then_dry_run_text(settings_env):
    catalog = Catalog(settings_env.catalog_url)
    populate(catalog, settings_env)
    out = _run(["select", "--budget", "5", "--seed", "2", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["selected"] == 5 and data["strategy"] == "hybrid" and data["seed"] == 2
    assert len(data["items"]) == 5 and all(item["reason"] for item in data["items"])
    assert data["files"]["csv"].endswith(".csv")
    with catalog.session() as session:
        assert session.scalar(select(Selection.id)) == data["selection_id"]
        run = session.scalars(select(Run).where(Run.command == "select")).one()
        assert run.status == "success" and run.counts["selected"] == 5

    dry = _run(["select", "--budget", "3", "--strategy", "uncertainty", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would select 3 of 51 eligible frames with uncertainty")
    assert "excluded: 5 labeled, 2 pushed, 1 no_embedding" in dry.output
    assert "#1 " in dry.output and "wrote" not in dry.output
    with catalog.session() as session:
        assert len(session.scalars(select(Selection)).all()) == 1
    catalog.dispose()


def test_unknown_strategy_is_one_line_exit_1(settings_env):
    result = CliRunner().invoke(main, ["select", "--strategy", "smart"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: unknown selection strategy 'smart'; valid: "
                                     "balance, cluster, coreset, hybrid, random, uncertainty")


def test_help_lists_every_registered_strategy():
    from active_learning.selection import STRATEGIES
    from curation.commands.selection import STRATEGY_NAMES

    assert list(STRATEGY_NAMES) == STRATEGIES.names()
    help_text = _run(["select", "--help"]).output
    assert "Examples:" in help_text and "beltcurate select --budget 500" in help_text
