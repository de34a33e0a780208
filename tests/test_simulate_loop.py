"""Bookkeeping of the simulation loop, with a backend of fixed arrays (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from active_learning.simulate import SimConfig, initial_rows, prepare_data, run_simulation
from curation.errors import InputError, UnknownNameError
from tests.support.simulate_backend import ArrayBackend

STRATEGIES = ["random", "uncertainty", "coreset", "hybrid"]


@pytest.fixture(scope="module")
def sim(synth_small, tmp_path_factory):
    data = prepare_data(synth_small, test_frames=30)
    config = SimConfig(strategies=STRATEGIES, rounds=3, budget=6, seeds=[0, 1], initial=10, finetune_iters=7,
                       initial_iters=11)
    backend = ArrayBackend(data)
    work = tmp_path_factory.mktemp("sim")
    updates = []
    results = run_simulation(data, config, work, backend=backend, on_update=lambda r: updates.append(len(r["rounds"])))
    return data, config, backend, work, results, updates


def _labeled_rows(results, seed, strategy, upto):
    initial = next(r for r in results["rounds"] if r["seed"] == seed and r["strategy"] == strategy and r["round"] == 0)
    rows = list(initial["initial_pool_rows"])
    for sel in results["selections"]:
        if sel["seed"] == seed and sel["strategy"] == strategy and sel["round"] <= upto:
            rows += sel["pool_rows"]
    return rows


def test_every_strategy_starts_from_the_same_initial_set(sim):
    data, config, _, _, results, _ = sim
    for seed in config.seeds:
        sets = {tuple(r["initial_pool_rows"]) for r in results["rounds"] if r["seed"] == seed and r["round"] == 0}
        assert len(sets) == 1
        assert list(sets.pop()) == initial_rows(len(data.pool_ids), config.initial, seed).tolist()
    seed_sets = {tuple(r["initial_pool_rows"]) for r in results["rounds"] if r["round"] == 0}
    assert len(seed_sets) == len(config.seeds)  # different seeds draw different initial sets


def test_each_round_reveals_exactly_the_budget_and_never_a_labeled_frame(sim):
    _, config, _, _, results, _ = sim
    for seed in config.seeds:
        for strategy in STRATEGIES:
            for rnd in range(1, config.rounds + 1):
                before = set(_labeled_rows(results, seed, strategy, rnd - 1))
                sel = next(s for s in results["selections"]
                           if s["seed"] == seed and s["strategy"] == strategy and s["round"] == rnd)
                assert len(sel["pool_rows"]) == config.budget == len(set(sel["pool_rows"]))
                assert not before & set(sel["pool_rows"])
                rec = next(r for r in results["rounds"]
                           if r["seed"] == seed and r["strategy"] == strategy and r["round"] == rnd)
                assert rec["labeled"] == config.initial + rnd * config.budget == len(before) + config.budget


def test_selections_are_pool_frames_never_test_frames(sim):
    data, _, _, _, results, _ = sim
    test = set(data.test_ids.tolist())
    for sel in results["selections"]:
        assert not test & set(sel["image_ids"])
        assert data.pool_ids[sel["pool_rows"]].tolist() == sel["image_ids"]


def test_training_budget_and_warm_start_are_the_same_for_every_strategy(sim):
    _, config, backend, work, _, _ = sim
    trains = [c for c in backend.calls if c[0] == "train"]
    scratch = [c for c in trains if c[2] is None]
    assert len(scratch) == len(config.seeds)  # round 0 once per seed, shared by all strategies
    assert all(c[3] == config.initial_iters for c in scratch)
    finetunes = [c for c in trains if c[2] is not None]
    assert len(finetunes) == len(config.seeds) * len(STRATEGIES) * config.rounds
    assert {c[3] for c in finetunes} == {config.finetune_iters}
    for seed in config.seeds:
        for rnd in range(1, config.rounds + 1):
            seeds = {c[4] for c in finetunes if f"seed{seed}/" in c[1] and c[1].endswith(f"round{rnd}.pt")}
            assert len(seeds) == 1  # same training seed in a round: only the data differs
    # each fine-tune starts from the same strategy's previous model
    for c in finetunes:
        if c[1].endswith("round1.pt"):
            assert c[2].endswith("round0.pt")
        else:
            strategy_dir = c[1].rsplit("/", 1)[0]
            assert c[2].startswith(strategy_dir)


def test_the_trained_set_is_exactly_the_labeled_set(sim):
    data, config, backend, work, results, _ = sim
    for seed in config.seeds:
        for strategy in STRATEGIES:
            trained = backend.trained[str(work / f"seed{seed}" / strategy / f"round{config.rounds}.pt")]
            rows = _labeled_rows(results, seed, strategy, config.rounds)
            assert sorted(trained) == sorted(data.pool_ids[rows].tolist())


def test_results_are_written_after_every_round(sim):
    _, config, _, work, results, updates = sim
    per_seed = 1 + len(STRATEGIES) * config.rounds  # round 0 + each strategy-round
    assert len(updates) == len(config.seeds) * per_seed + 1
    on_disk = json.loads((work / "results.json").read_text())
    assert on_disk["complete"] is True
    assert len(on_disk["rounds"]) == len(results["rounds"]) == len(config.seeds) * len(STRATEGIES) * (config.rounds + 1)
    assert set(on_disk["summary"]["strategies"]) == set(STRATEGIES)


def test_random_needs_no_scoring_pass(sim):
    _, config, backend, _, results, _ = sim
    # one pool scoring per seed at round 0, then one per model-based strategy per round but the last
    expected = len(config.seeds) * (1 + (len(STRATEGIES) - 1) * (config.rounds - 1))
    assert len(results["timings"]["score_s"]) == expected


def test_config_errors_name_the_fix(synth_small):
    data = prepare_data(synth_small, test_frames=30)
    with pytest.raises(InputError, match="--initial 80"):
        SimConfig(strategies=["random"], initial=80, rounds=3, budget=10).validate(data)
    with pytest.raises(UnknownNameError, match="hybrid"):
        SimConfig(strategies=["random", "best"]).validate()


def test_test_split_holds_whole_sequences(synth_small):
    data = prepare_data(synth_small, test_frames=30)
    pool_groups = {data.groups[int(i)] for i in data.pool_ids}
    test_groups = {data.groups[int(i)] for i in data.test_ids}
    assert not pool_groups & test_groups
    assert 15 <= len(data.test_ids) <= 50
    assert len(data.pool_ids) + len(data.test_ids) == len(data.coco["images"])
    again = prepare_data(synth_small, test_frames=30)
    assert np.array_equal(again.test_ids, data.test_ids)  # fixed: independent of the simulation seeds


def test_pool_cap_takes_whole_sequences(synth_small):
    data = prepare_data(synth_small, test_frames=30, pool_frames=40)
    assert 40 <= len(data.pool_ids) < 60
    members = {}
    for image_id, group in data.groups.items():
        members.setdefault(group, set()).add(image_id)
    pool = set(data.pool_ids.tolist())
    for image_id in pool:
        assert members[data.groups[image_id]] <= pool


def test_a_strategy_variant_runs_beside_its_default(synth_small, tmp_path):
    from active_learning.simulate import parse_strategy

    assert parse_strategy("hybrid:diversity=kcenter:rare_quota=0") == ("hybrid", {"diversity": "kcenter", "rare_quota": 0.0})
    assert parse_strategy("random") == ("random", {})
    with pytest.raises(InputError, match="key=value"):
        parse_strategy("hybrid:kcenter")
    with pytest.raises(UnknownNameError, match="hybrid"):
        SimConfig(strategies=["best:diversity=kcenter"]).validate()
    data = prepare_data(synth_small, test_frames=30)
    variants = ["hybrid", "hybrid:diversity=kcenter"]
    config = SimConfig(strategies=variants, rounds=1, budget=6, seeds=[0], initial=10, finetune_iters=3, initial_iters=3)
    results = run_simulation(data, config, tmp_path, backend=ArrayBackend(data))
    picks = {sel["strategy"]: sel["pool_rows"] for sel in results["selections"]}
    assert set(picks) == set(variants) and all(len(rows) == 6 for rows in picks.values())
    assert picks["hybrid"] != picks["hybrid:diversity=kcenter"], "the variant's parameter reached the strategy"


class CrashingBackend(ArrayBackend):
    """Dies (like a killed process) at the ``crash_at``-th training call."""

    def __init__(self, data, crash_at: int):
        super().__init__(data)
        self.crash_at = crash_at

    def train(self, train_json, out, **kwargs) -> float:
        if len(self.calls) + 1 == self.crash_at:
            raise KeyboardInterrupt("killed")
        return super().train(train_json, out, **kwargs)


@pytest.mark.parametrize("crash_at", [1, 2, 7, 12, 15])
def test_an_interrupted_run_resumes_without_repeating_or_duplicating_rounds(synth_small, tmp_path, crash_at):
    data = prepare_data(synth_small, test_frames=30)
    config = SimConfig(strategies=STRATEGIES, rounds=2, budget=6, seeds=[0, 1], initial=10, finetune_iters=7,
                       initial_iters=11)
    reference = run_simulation(data, config, tmp_path / "whole", backend=ArrayBackend(data))
    # 2 seeds x (1 round-0 training + 4 strategies x 2 rounds) = 18 trainings in all
    with pytest.raises(KeyboardInterrupt):
        run_simulation(data, config, tmp_path / "cut", backend=CrashingBackend(data, crash_at))
    backend = ArrayBackend(data)
    resumed = run_simulation(data, config, tmp_path / "cut", backend=backend, resume=True)
    assert resumed["complete"]
    key = lambda r: (r["seed"], r["strategy"], r["round"])  # noqa: E731
    assert sorted(map(key, resumed["rounds"])) == sorted(map(key, reference["rounds"]))
    assert len(set(map(key, resumed["rounds"]))) == len(resumed["rounds"]) == 2 * 4 * 3
    assert ({key(s): s["pool_rows"] for s in resumed["selections"]} == {key(s): s["pool_rows"] for s in reference["selections"]})
    assert ({key(r): r["map50"] for r in resumed["rounds"]} == {key(r): r["map50"] for r in reference["rounds"]})
    trainings = [call for call in backend.calls if call[0] == "train"]
    assert len(trainings) == 18 - (crash_at - 1), "finished rounds are not trained again"
    # resuming a finished run does nothing
    again = ArrayBackend(data)
    run_simulation(data, config, tmp_path / "cut", backend=again, resume=True)
    assert again.calls == []


def test_resume_refuses_a_different_configuration(synth_small, tmp_path):
    data = prepare_data(synth_small, test_frames=30)
    config = SimConfig(strategies=["random"], rounds=1, budget=6, seeds=[0], initial=10, finetune_iters=3, initial_iters=3)
    run_simulation(data, config, tmp_path, backend=ArrayBackend(data))
    other = SimConfig(strategies=["random"], rounds=1, budget=7, seeds=[0], initial=10, finetune_iters=3, initial_iters=3)
    with pytest.raises(InputError, match="different config"):
        run_simulation(data, other, tmp_path, backend=ArrayBackend(data), resume=True)
