"""`beltcurate push` / `pull` against the real Label Studio server, configured by environment."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curation.catalog import Catalog, Selection, SelectionItem
from curation.cli import main
from tests.support.labelstudio import add_predictions, annotate, make_frames, region, unique_title

pytestmark = pytest.mark.labelstudio


def test_push_then_pull_from_the_command_line(tmp_path, settings_env, labelstudio_server):
    catalog = Catalog(settings_env.catalog_url)
    frame_ids = make_frames(catalog, labelstudio_server.frames_dir("cli"), 3)
    add_predictions(catalog, frame_ids, "det-cli")
    with catalog.session() as session:
        selection = Selection(name="cli", strategy="hybrid", budget=3, seed=0, params={})
        session.add(selection)
        session.flush()
        for rank, fid in enumerate(frame_ids):
            session.add(SelectionItem(selection_id=selection.id, frame_id=fid, rank=rank, reason=f"rank {rank}"))
    project = unique_title("cli")
    env = {
        "BELTCURATE_STATE_DIR": str(tmp_path / "state"),
        "BELTCURATE_LABELSTUDIO_URL": labelstudio_server.url,
        "BELTCURATE_LABELSTUDIO_TOKEN": labelstudio_server.token,
        "BELTCURATE_LABELSTUDIO_PROJECT": project,
        "BELTCURATE_LABELSTUDIO_IMAGE_ROOT": str(labelstudio_server.document_root),
    }
    runner = CliRunner()
    out = runner.invoke(main, ["push", "--selection", str(selection.id), "--json"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    pushed = json.loads(out.output)
    assert (pushed["imported"], pushed["project"], pushed["model_version"]) == (3, project, "det-cli")
    assert labelstudio_server.token not in out.output

    out = runner.invoke(main, ["push"], env=env, catch_exceptions=False)  # the newest selection, again
    assert out.exit_code == 0 and "0 imported, 3 already there" in out.output

    with labelstudio_server.client() as client:
        tasks, _ = client.list_tasks(pushed["project_id"])
        task_id = {t["data"]["frame_id"]: t["id"] for t in tasks}[frame_ids[0]]
        annotate(client, task_id, [region([10, 10, 40, 40], "battery", 320, 240), region([0, 0, 1, 1], "unicorn", 320, 240, "r1")])
    out = runner.invoke(main, ["pull", "--full"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "full pull" in out.output and "1 new" in out.output and "1 regions rejected" in out.output
    assert "unknown_class" in out.output  # the rejected region is reported, not silently dropped


def test_a_wrong_token_is_one_line_and_exit_1(tmp_path, settings_env, labelstudio_server):
    Catalog(settings_env.catalog_url)
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state"), "BELTCURATE_LABELSTUDIO_URL": labelstudio_server.url,
           "BELTCURATE_LABELSTUDIO_TOKEN": "wrong-token-abcdef", "BELTCURATE_LABELSTUDIO_PROJECT": unique_title("cli")}
    out = CliRunner().invoke(main, ["pull"], env=env)
    assert out.exit_code == 1
    assert "401" in out.output and "BELTCURATE_LABELSTUDIO_TOKEN" in out.output and "wrong-token-abcdef" not in out.output


def test_push_without_a_selection_says_what_to_run(tmp_path, settings_env, labelstudio_server):
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state"), "BELTCURATE_LABELSTUDIO_URL": labelstudio_server.url,
           "BELTCURATE_LABELSTUDIO_TOKEN": labelstudio_server.token}
    out = CliRunner().invoke(main, ["push"], env=env)
    assert out.exit_code == 1 and "beltcurate select" in out.output
