"""``beltcurate review`` end to end in a subprocess, with the mongod beltcurate manages itself.

Checks that the dataset persists across processes (the second run changes nothing), that the
managed mongod stops when the command ends (no 30 s exit hang, no process left behind) and that
``--launch`` serves the saved views until SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.postgres import free_port
from tests.support.review_case import EXPECTED_VIEWS, IN_DATASET, build_case

pytestmark = pytest.mark.fiftyone

CLI = [sys.executable, "-c", "from curation.cli import main; main()"]


@pytest.fixture
def cli_env(tmp_path):
    from curation.catalog import Catalog

    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BELTCURATE_", "FIFTYONE_DATABASE"))}
    env.update(BELTCURATE_STATE_DIR=str(state), BELTCURATE_REVIEW_PORT=str(free_port()), FIFTYONE_SHOW_PROGRESS_BARS="false")
    catalog = Catalog(f"sqlite:///{state / 'catalog.sqlite'}")
    case = build_case(catalog, tmp_path / "images")
    catalog.dispose()
    from active_learning.embeddings import VectorStore

    ids = sorted(case.vectors)
    VectorStore(state / "vectors", "m1").append(ids, [case.vectors[i] for i in ids])
    return env, state, case


def _mongod_state(state):
    path = state / "fiftyone-db" / "mongod.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_review_command_builds_persists_and_stops_its_mongod(cli_env, tmp_path):
    env, state, case = cli_env
    started = time.monotonic()
    first = subprocess.run([*CLI, "review", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    first_s = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["added"] == len(IN_DATASET) and data["model_version"] == "m1"
    assert data["views"] == {name: len(frames) for name, frames in EXPECTED_VIEWS.items()}
    assert data["similarity_frames"] == len(IN_DATASET) and data["near_duplicate_frames"] == 2
    assert data["urls"]["false-positives"].endswith(f":{env['BELTCURATE_REVIEW_PORT']}/datasets/beltcurate?view=false-positives")
    assert _mongod_state(state) is None, "the managed mongod must stop when the command ends"
    # A stop after FiftyOne's exit hook ends in well under FiftyOne's 30 s server-selection timeout.
    assert first_s < 60, f"review took {first_s:.1f} s"

    second = subprocess.run([*CLI, "review", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert (again["added"], again["updated"], again["removed"], again["unchanged"]) == (0, 0, 0, len(IN_DATASET))
    assert again["mAP"] == data["mAP"]


def test_review_text_output_lists_every_view_url(cli_env, tmp_path):
    env, _state, _case = cli_env
    result = subprocess.run([*CLI, "review"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    for name in EXPECTED_VIEWS:
        assert f"?view={name}" in result.stdout
    assert "mAP@[.5:.95]" in result.stdout


def test_unknown_model_is_a_one_line_error(cli_env, tmp_path):
    env, state, _case = cli_env
    result = subprocess.run([*CLI, "review", "--model", "nope"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: model version 'nope' is not in the catalog; known: m1"


def test_launch_serves_views_until_sigterm(cli_env, tmp_path):
    env, state, _case = cli_env
    port = env["BELTCURATE_REVIEW_PORT"]
    process = subprocess.Popen([*CLI, "review", "--launch"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "FiftyOne app at" in line:
                break
        assert any("FiftyOne app at" in line for line in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/datasets/beltcurate?view=false-positives", timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        assert _mongod_state(state) is not None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0
    assert _mongod_state(state) is None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
