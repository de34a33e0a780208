"""beltcurate import-labels / export / datasets from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from curation.cli import main


def _run(args, env):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_import_export_datasets_json(tmp_path, settings_env, synth_small):
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state")}
    out = _run(["import-labels", str(synth_small / "annotations.json"), "--format", "coco", "--name", "synth", "--json"], env)
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["source"] == "import:synth" and summary["current"] == 120 and summary["dropped"] == 0

    out = _run(["export", "--name", "v1", "--format", "coco,yolo", "--images", "copy", "--json"], env)
    assert out.exit_code == 0, out.output
    v1 = json.loads(out.output)
    assert v1["formats"] == ["coco", "yolo"] and v1["n_frames"] == 120 and v1["diff"] is None
    assert (Path(v1["path"]) / "data.yaml").is_file() and not next(Path(v1["path"], "images").rglob("*.jpg")).is_symlink()

    out = _run(["export", "--name", "v2", "--parent", "v1", "--format", "voc"], env)
    assert out.exit_code == 0, out.output
    assert "vs v1: +0 added, -0 removed, 0 relabeled" in out.output

    listing = json.loads(_run(["datasets", "--json"], env).output)
    assert [(v["name"], v["parent"]) for v in listing["versions"]] == [("v1", None), ("v2", "v1")]


def test_errors_are_one_line_with_exit_code_1(tmp_path, settings_env, synth_small):
    env = {"BELTCURATE_STATE_DIR": str(tmp_path / "state")}
    out = CliRunner().invoke(main, ["export", "--name", "v1"], env=env)
    assert out.exit_code == 1 and "no labeled frames to export" in out.output
    out = CliRunner().invoke(main, ["export", "--name", "v1", "--format", "coco,kitti"], env=env)
    assert out.exit_code == 2 and "kitti" in out.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "nope.jpg", "width": 4, "height": 4}], "categories": []}')
    out = CliRunner().invoke(main, ["import-labels", str(bad), "--format", "coco", "--on-bad", "fail"], env=env)
    assert out.exit_code == 1 and "nope.jpg" in out.output and "nothing imported" in out.output
