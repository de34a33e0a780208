"""Near-duplicate collapse: temporal pairs and groups against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.dedupe import (
    DedupeResult,
    collapse,
    dedupe,
    factorize,
    global_dedupe,
    temporal_dedupe,
    temporal_pairs,
)
from curation.errors import InputError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(rng: np.random.Generator, n_items: int, d: int, max_copies: int):
    """Items with 1..max_copies near-identical copies each; returns embeddings and the item of each row."""
    base = unit(rng.standard_normal((n_items, d)))
    copies = rng.integers(1, max_copies + 1, n_items)
    item = np.repeat(np.arange(n_items), copies)
    x = base[item] + 0.003 * rng.standard_normal((len(item), d)).astype(np.float32)
    perm = rng.permutation(len(item))
    return unit(x[perm]), item[perm]


def brute_temporal(x, cam, t, threshold, window):
    n = len(x)
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    out = set()
    for i in range(n):
        for j in range(i + 1, n):
            if cam[i] == cam[j] and np.isfinite(t[i]) and np.isfinite(t[j]) and abs(t[i] - t[j]) < window \
                    and 1.0 - sims[i, j] < threshold:
                out.add((i, j))
    return out


@settings(max_examples=50, deadline=None)
@given(n_items=st.integers(1, 30), seed=st.integers(0, 10_000), n_cams=st.integers(1, 3),
       window=st.sampled_from([0.5, 1.0, 3.0]), nan_share=st.sampled_from([0.0, 0.2]))
def test_temporal_pairs_equal_bruteforce(n_items, seed, n_cams, window, nan_share):
    rng = np.random.default_rng(seed)
    x, _ = planted(rng, n_items, 8, 4)
    n = len(x)
    cam = rng.integers(0, n_cams, n)
    t = np.round(rng.uniform(0, 10, n), 1)  # coarse times: many ties and exact-window cases
    t[rng.random(n) < nan_share] = np.nan
    a, b = temporal_pairs(x, cam, t, threshold=0.05, window_s=window)
    assert np.all(a < b)
    got = set(zip(a.tolist(), b.tolist()))
    assert len(got) == len(a), "each pair once"
    assert got == brute_temporal(x, cam, t, 0.05, window)


@settings(max_examples=50, deadline=None)
@given(n_items=st.integers(1, 40), seed=st.integers(0, 10_000), max_copies=st.integers(1, 5))
def test_dedupe_never_keeps_two_members_of_one_group(n_items, seed, max_copies):
    rng = np.random.default_rng(seed)
    x, item = planted(rng, n_items, 16, max_copies)
    priority = rng.random(len(x))
    result = dedupe(x, priority, threshold=0.05)  # global over all rows
    kept = np.flatnonzero(result.keep)
    assert sorted(item[kept].tolist()) == sorted(set(item.tolist())), "exactly one member per planted item"
    # and no two kept rows are near-duplicates of each other
    sims = x[kept] @ x[kept].T
    np.fill_diagonal(sims, -1)
    assert kept.size < 2 or (1.0 - sims.max()) >= 0.05
    # the kept member is the highest-priority one of its group
    for rep in kept:
        members = np.flatnonzero(result.representative == rep)
        assert priority[rep] == priority[members].max()


def test_collapse_keeps_highest_priority_with_lowest_row_on_ties():
    # chain 0-1-2 and pair 3-4; 5 alone
    rep = collapse(6, np.array([0, 1, 3]), np.array([1, 2, 4]), np.array([0.1, 0.9, 0.9, 0.5, 0.5, 0.0]))
    assert rep.tolist() == [1, 1, 1, 3, 3, 5]


def test_ineligible_rows_pinned_with_inf_win_their_group():
    x = unit(np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32))
    priority = np.array([np.inf, 5.0, 1.0])  # row 0 is already labeled
    result = dedupe(x, priority, threshold=0.05)
    assert result.representative.tolist() == [0, 0, 2]
    assert result.groups()[0].tolist() == [0, 1]
    assert [d.tolist() for d in result.duplicates_of(np.array([0, 2]))] == [[1], []]


def test_groups_and_duplicates_of_agree():
    rep = np.array([0, 0, 2, 2, 2, 5])
    result = DedupeResult(rep, np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert [g.tolist() for g in result.groups()] == [[0, 1], [2, 3, 4]]
    assert [d.tolist() for d in result.duplicates_of(np.array([2, 0, 5]))] == [[3, 4], [1], []]
    assert result.n_collapsed == 3


def test_two_stages_merge_temporal_and_global_groups():
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((3, 8)))
    # rows 0,1: same camera 0.5 s apart (temporal); row 2: same item on another camera much later;
    # rows 3, 4: unrelated items
    x = unit(np.stack([base[0], base[0] + 0.001, base[0] + 0.002, base[1], base[2]]))
    cam = np.array([0, 0, 1, 0, 1])
    t = np.array([0.0, 0.5, 900.0, 1.0, 901.0])
    priority = np.array([0.2, 0.4, 0.3, 0.9, 0.1])
    first = temporal_dedupe(x, priority, cam, t, threshold=0.05, window_s=2.0)
    assert first.representative.tolist() == [1, 1, 2, 3, 4]
    assert first.temporal_pairs == 1
    both = global_dedupe(x, priority, np.flatnonzero(first.keep), threshold=0.05, previous=first)
    assert both.representative.tolist() == [1, 1, 1, 3, 4]
    assert both.global_pairs == 1 and both.temporal_pairs == 1
    # without the temporal window only the global stage can find the pairs
    assert dedupe(x, priority, threshold=0.05).representative.tolist() == [1, 1, 1, 3, 4]
    only_temporal = dedupe(x, priority, threshold=0.05, camera=cam, captured_at_s=t, window_s=2.0, global_rows=None)
    assert only_temporal.representative.tolist() == [1, 1, 2, 3, 4]


def test_factorize_names_and_ints():
    assert factorize(np.array(["b", "a", "b"])).tolist() == [1, 0, 1]
    assert factorize(np.array([7, 3])).tolist() == [7, 3]


def test_dedupe_rejects_bad_priority():
    x = unit(np.eye(3, dtype=np.float32))
    with pytest.raises(InputError, match="priority has shape"):
        dedupe(x, np.zeros(2), threshold=0.05)
    with pytest.raises(InputError, match="NaN"):
        dedupe(x, np.array([0.0, np.nan, 1.0]), threshold=0.05)
