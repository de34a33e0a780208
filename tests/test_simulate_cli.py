"""`beltcurate simulate` end to end with the reference trainer (tiny: a few iterations, ~20 s)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from curation.cli import main


def test_simulate_runs_real_rounds_and_writes_results(synth_small, tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", "--data", str(synth_small), "--strategies", "random,hybrid", "--rounds", "1", "--budget", "6",
            "--initial", "12", "--seeds", "1", "--test-frames", "30", "--initial-iters", "6", "--finetune-iters", "3",
            "--input-size", "128x96", "--out", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["summary"]["strategies"]) == {"random", "hybrid"}
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and len(results["rounds"]) == 4
    for rec in results["rounds"]:
        assert 0.0 <= rec["map50"] <= 1.0 and 0.0 <= rec["map"] <= rec["map50"] + 1e-9
        assert rec["labeled"] == 12 + 6 * rec["round"]
    assert (out / "curves.png").stat().st_size > 1000
    checkpoint = out / "seed0" / "hybrid" / "round1.pt"
    assert checkpoint.is_file()

    # the same command again continues the finished run: nothing is trained or added twice
    written = checkpoint.stat().st_mtime_ns
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert json.loads((out / "results.json").read_text())["rounds"] == results["rounds"]
    assert checkpoint.stat().st_mtime_ns == written
    # other options on the same folder are refused, with the way out
    changed = CliRunner().invoke(main, [a if a != "6" else "7" for a in args])
    assert changed.exit_code == 1 and "--fresh" in changed.output
    fresh = CliRunner().invoke(main, [*args, "--fresh"])
    assert fresh.exit_code == 0 and checkpoint.stat().st_mtime_ns != written


def test_simulate_rejects_bad_input(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", "--data", str(tmp_path), "--seeds", "1"])
    assert result.exit_code == 1
    assert "neither a COCO file" in result.output
    result = runner.invoke(main, ["simulate", "--data", str(tmp_path), "--strategies", "random,magic"])
    assert result.exit_code == 1 and "unknown selection strategy 'magic'" in result.output
    result = runner.invoke(main, ["simulate", "--data", str(tmp_path), "--input-size", "256"])
    assert result.exit_code == 1 and "WIDTHxHEIGHT" in result.output
