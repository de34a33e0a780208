"""run_selection_quality end to end with a tiny real detector (a few iterations, ~15 s)."""

from __future__ import annotations

from active_learning.selection_quality import MEASURES, run_selection_quality
from active_learning.simulate import prepare_data


def test_selection_quality_measures_every_strategy_against_random(synth_small, tmp_path):
    data = prepare_data(synth_small, test_frames=30)
    seen = []
    result = run_selection_quality(data, ["random", "uncertainty", "hybrid"], seeds=[0], seed_frames=20, budget=10,
                                   train_iters=4, input_size=(128, 96), rare_classes=["battery"], work_dir=tmp_path,
                                   on_update=seen.append)
    assert result["complete"] and result["seeds_done"] == [0] and len(seen) == 1
    run = result["seeds"][0]
    assert run["pool_unlabeled"] == len(data.pool_ids) - 20
    for strategy in ("random", "uncertainty", "hybrid"):
        measured = run["strategies"][strategy]
        assert measured["frames"] == 10
        assert measured["errors_per_frame"] == measured["missed_per_frame"] + measured["false_per_frame"]
        assert 0.0 <= measured["near_duplicate_share"] <= 1.0
        assert set(MEASURES) <= set(result["comparison"][strategy])
    assert result["comparison"]["random"]["errors_per_frame"]["ratio_vs_random"] in (1.0, None)
