"""CLI conventions: --json documents, errors as one line with exit code 1, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from click.testing import CliRunner

from curation.cli import main


def _run(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_synth_then_ingest_json(tmp_path, settings_env):
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state")}
    out = _run(["synth", str(tmp_path / "frames"), "--frames", "12", "--seed", "1", "--json"], env)
    assert out.exit_code == 0, out.output
    synth = json.loads(out.output)
    assert synth["frames"] == 12 and set(synth["class_counts"]) >= {"battery", "cardboard"}
    out = _run(["ingest", str(tmp_path / "frames" / "images"), "--site-from-path", "--json"], env)
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert set(summary) >= {"scanned", "new", "duplicate", "already_known", "quarantined", "quarantine_reasons", "files_per_s"}
    assert summary["new"] == 12
    again = json.loads(_run(["ingest", str(tmp_path / "frames" / "images"), "--site-from-path", "--json"], env).output)
    assert again["new"] == 0 and again["already_known"] == 12
    quarantine = json.loads(_run(["quarantine", "--json"], env).output)
    assert quarantine == {"total": 0, "by_reason": {}, "files": []}


def test_config_show_json_masks_token(settings_env):
    out = _run(["config", "show", "--json"], {"BELTCURATE_LABELSTUDIO_TOKEN": "very-secret-token"})
    data = json.loads(out.output)
    token = next(r for r in data["settings"] if r["name"] == "labelstudio.token")
    assert token["value"] == "***" and token["source"] == "env:BELTCURATE_LABELSTUDIO_TOKEN"
    assert "very-secret-token" not in out.output


def test_user_error_is_one_line_exit_1(tmp_path, settings_env):
    config = tmp_path / "bad.toml"
    config.write_text("[select]\nbudget = 'lots'\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "show"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: setting select.budget")
    assert "Traceback" not in result.output


def test_db_upgrade(tmp_path, settings_env):
    out = _run(["db", "upgrade", "--json"], {"BELTCURATE_STATE_DIR": str(tmp_path / "s")})
    assert json.loads(out.output)["revision"]


def test_help_is_fast_and_imports_no_heavy_library():
    code = "import sys, curation.cli; print(sorted(m for m in ('torch','faiss','fiftyone','ray','sklearn','pandas') if m in sys.modules))"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert time.perf_counter() - started < 10
