"""Grouped, stratified, deterministic splits."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.errors import InputError
from exporters.splits import SPLITS, SessionGrouper, SplitPlanner, assign_splits


def _random_groups(seed: int, n_groups: int, n_classes: int = 6):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_groups)
    # long-tailed classes: class k appears with probability ~ 0.9 ** (2k)
    presence = rng.random((n_groups, n_classes)) < (0.9 ** (2 * np.arange(n_classes)))[None, :] * 0.8
    counts = presence * rng.integers(1, 30, (n_groups, n_classes))
    keys = [f"cam{rng.integers(3)}/seq{g}" for g in range(n_groups)]
    return keys, sizes, counts


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.3, 0.0), (1.0, 0.0, 0.0), (0.6, 0.2, 0.2)]))
def test_every_group_gets_one_open_split_deterministically(seed, n_groups, fractions):
    keys, sizes, counts = _random_groups(seed, n_groups)
    split = assign_splits(keys, sizes, counts, fractions, seed=3)
    assert set(split) == set(keys)
    assert all(fractions[SPLITS.index(s)] > 0 for s in split.values())
    # same inputs in another order -> same answer
    order = np.random.default_rng(seed).permutation(n_groups)
    shuffled = assign_splits([keys[i] for i in order], sizes[order], counts[order], fractions, seed=3)
    assert shuffled == split


def test_class_and_frame_proportions_within_tolerance():
    keys, sizes, counts = _random_groups(1, 600)
    split = assign_splits(keys, sizes, counts, (0.8, 0.1, 0.1), seed=0)
    which = np.array([SPLITS.index(split[k]) for k in keys])
    totals = counts.sum(axis=0)
    for s, fraction in enumerate((0.8, 0.1, 0.1)):
        share = counts[which == s].sum(axis=0) / totals
        assert np.all(np.abs(share - fraction) < 0.02), (SPLITS[s], share)
        assert abs(sizes[which == s].sum() / sizes.sum() - fraction) < 0.02


def test_rare_class_reaches_every_split():
    # 30 groups with one battery each among 1000 groups of common stuff
    rng = np.random.default_rng(5)
    n = 1000
    counts = np.zeros((n, 2), dtype=int)
    counts[:, 0] = rng.integers(1, 10, n)
    counts[rng.choice(n, 30, replace=False), 1] = 1
    split = assign_splits([f"g{i}" for i in range(n)], np.ones(n), counts, (0.8, 0.1, 0.1))
    batteries = [split[f"g{i}"] for i in np.flatnonzero(counts[:, 1])]
    assert {s: batteries.count(s) for s in SPLITS} == {"train": 24, "val": 3, "test": 3}


def test_seed_changes_assignment_but_not_balance():
    keys, sizes, counts = _random_groups(2, 400)
    a = assign_splits(keys, sizes, counts, (0.8, 0.1, 0.1), seed=0)
    b = assign_splits(keys, sizes, counts, (0.8, 0.1, 0.1), seed=1)
    assert a != b


def test_fixed_groups_keep_their_split_and_count_toward_balance():
    keys, sizes, counts = _random_groups(3, 500)
    fixed = {k: "test" for k in keys[:40]}
    split = assign_splits(keys, sizes, counts, (0.8, 0.1, 0.1), fixed=fixed)
    assert all(split[k] == "test" for k in keys[:40])
    which = np.array([SPLITS.index(split[k]) for k in keys])
    frames_test = sizes[which == 2].sum() / sizes.sum()
    assert abs(frames_test - 0.1) < 0.03  # new groups avoid the overfilled test split


def test_bad_fractions_are_rejected():
    with pytest.raises(InputError, match="summing to 1"):
        assign_splits(["a"], np.ones(1), np.ones((1, 1)), (0.8, 0.3, 0.1))
    with pytest.raises(InputError, match="three"):
        SplitPlanner(["a"], (0.5, 0.5))


def test_planner_counts_frames_and_known_classes():
    planner = SplitPlanner(["can", "glass"], (0.5, 0.5, 0.0), seed=0)
    for group, labels in [("g1", ["can"]), ("g1", ["can", "zebra"]), ("g2", ["glass"]), ("g3", [])]:
        planner.add(group, labels)
    plan = planner.plan()
    assert set(plan) == {"g1", "g2", "g3"} and set(plan.values()) <= {"train", "val"}


def test_session_grouper_cuts_on_time_gaps_and_streams():
    t0 = dt.datetime(2026, 11, 2, 6, 0, 0)
    grouper = SessionGrouper(gap_s=30)
    keys = [
        grouper.key(1, "west", "cam1", None, t0),
        grouper.key(2, "west", "cam1", None, t0 + dt.timedelta(seconds=20)),
        grouper.key(3, "west", "cam1", None, t0 + dt.timedelta(seconds=45)),  # 25 s after frame 2: same session
        grouper.key(4, "west", "cam1", None, t0 + dt.timedelta(seconds=120)),  # gap of 75 s: new session
        grouper.key(5, "west", "cam2", None, t0 + dt.timedelta(seconds=121)),  # other camera
        grouper.key(6, "west", "cam2", "seqA", None),  # sequence without time
        grouper.key(7, "west", "cam2", "seqA", None),
        grouper.key(8, "west", "cam2", None, None),  # nothing known: alone
    ]
    assert keys[0] == keys[1] == keys[2]
    assert len({keys[0], keys[3], keys[4], keys[5], keys[7]}) == 5
    assert keys[5] == keys[6] == "west/cam2/seqA"
    assert keys[7] == "frame:8"
