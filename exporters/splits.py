"""Deterministic train/val/test splits, grouped and stratified by class.

Frames of one *group* (a belt sequence, or frames of one camera close in time) are near-identical:
if they straddle train and test, test scores measure memory, not generalization. So splits are
assigned per group, never per frame. Among groups, assignment is greedy iterative stratification
(after Sechidis et al. 2011): groups holding the rarest classes are placed first, each into the
split that is least filled relative to its target for the group's classes and frames. Ties break by a
seeded shuffle, so the same groups, counts and seed always give the same splits.

Groups already placed by a parent version keep their split (``fixed``): a frame never moves from
train in v1 to test in v2.

Memory: one row of class counts per group (``groups x classes`` int64), nothing per frame.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping, Sequence

import numpy as np

from curation.errors import InputError

SPLITS: tuple[str, ...] = ("train", "val", "test")


def validate_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """(train, val, test) fractions: non-negative, summing to 1 within 1e-6."""
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS) or any(f < 0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise InputError(f"split fractions {list(fractions)} must be three non-negative numbers (train, val, test) summing to 1, e.g. 0.8,0.1,0.1")
    return values


def assign_splits(
    group_keys: Sequence[str],
    group_sizes: np.ndarray,
    group_class_counts: np.ndarray,
    fractions: Sequence[float],
    *,
    seed: int = 0,
    fixed: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Place each group in a split.

    ``group_keys`` (G,) unique keys; ``group_sizes`` (G,) frames per group; ``group_class_counts``
    (G, C) boxes per class per group; ``fractions`` (train, val, test) target shares; ``fixed``
    maps groups that must keep a split (from a parent version). Returns ``{group_key: split}``.
    Deterministic: independent of the order the groups are given in.
    """
    fractions = validate_fractions(fractions)
    keys = list(group_keys)
    n_groups = len(keys)
    if n_groups == 0:
        return {}
    sizes = np.asarray(group_sizes, dtype=np.float64).reshape(n_groups)
    counts = np.asarray(group_class_counts, dtype=np.float64).reshape(n_groups, -1)
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed.values()) - set(SPLITS))
    if unknown:
        raise InputError(f"fixed splits {unknown} are not one of {list(SPLITS)}")
    target = np.asarray(fractions)
    class_totals = counts.sum(axis=0)
    n_frames = sizes.sum()
    target_classes = target[:, None] * class_totals[None, :]  # (S, C)
    target_frames = target * n_frames  # (S,)
    current_classes = np.zeros_like(target_classes)
    current_frames = np.zeros_like(target_frames)
    split_index = {name: i for i, name in enumerate(SPLITS)}
    result: dict[str, str] = {}
    free: list[int] = []
    for g, key in enumerate(keys):
        if key in fixed:
            s = split_index[fixed[key]]
            current_classes[s] += counts[g]
            current_frames[s] += sizes[g]
            result[key] = fixed[key]
        else:
            free.append(g)
    if not free:
        return result
    # Order: a seeded shuffle of the sorted keys (tie-break), then rarest class present first,
    # then larger groups first (big groups are hardest to fit late).
    free.sort(key=lambda g: keys[g])
    rng = np.random.default_rng(seed)
    free_arr = np.asarray(free)[rng.permutation(len(free))]
    present = counts[free_arr] > 0
    rarity = np.where(present, class_totals[None, :], np.inf).min(axis=1)
    order = free_arr[np.lexsort((-sizes[free_arr], rarity))]
    open_splits = np.flatnonzero(target > 0)
    for g in order:
        nonzero = np.flatnonzero(counts[g])
        c = counts[g, nonzero]
        n = sizes[g]
        # Fill ratio after adding the group (current / target) per class, weighted by the group's
        # share of that class (so its rarest class dominates), plus the frame fill ratio. The
        # split left least filled wins; relative fills keep every class proportional, where
        # absolute deficits would pull everything into the biggest split (train) first.
        class_share = c / class_totals[nonzero]
        best, best_score = -1, np.inf
        for s in open_splits:
            score = float(np.sum(class_share * (current_classes[s, nonzero] + c) / target_classes[s, nonzero]))
            score += (n / n_frames) * (current_frames[s] + n) / target_frames[s]
            if score < best_score - 1e-12:
                best, best_score = s, score
        current_classes[best, nonzero] += c
        current_frames[best] += n
        result[keys[g]] = SPLITS[best]
    return result


class SplitPlanner:
    """Collects per-group class counts from a stream of frames, then assigns splits.

    >>> planner = SplitPlanner(["can", "glass"], (0.8, 0.1, 0.1))
    >>> planner.add("belt1/seq7", ["can", "can"])   # one call per frame
    >>> split_of_group = planner.plan()
    """

    def __init__(self, class_names: Sequence[str], fractions: Sequence[float], *, seed: int = 0, fixed: Mapping[str, str] | None = None):
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.fractions = validate_fractions(fractions)
        self.seed = seed
        self.fixed = dict(fixed or {})
        self._group_row: dict[str, int] = {}
        self._sizes: list[int] = []
        self._counts: list[np.ndarray] = []

    def add(self, group: str, labels: Iterable[str]) -> None:
        row = self._group_row.get(group)
        if row is None:
            row = self._group_row[group] = len(self._sizes)
            self._sizes.append(0)
            self._counts.append(np.zeros(len(self.class_index), dtype=np.int64))
        self._sizes[row] += 1
        counts = self._counts[row]
        for label in labels:
            index = self.class_index.get(label)
            if index is not None:  # unknown classes are reported by the exporter, not counted
                counts[index] += 1

    def plan(self) -> dict[str, str]:
        keys = list(self._group_row)
        counts = np.vstack(self._counts) if self._counts else np.zeros((0, len(self.class_index)))
        return assign_splits(keys, np.asarray(self._sizes), counts, self.fractions, seed=self.seed, fixed=self.fixed)


class SessionGrouper:
    """Group keys for frames streamed in (site, camera, sequence, captured_at) order.

    A group is one belt sequence (``site/camera/sequence``), cut into sessions where the camera's
    clock jumps by more than ``gap_s`` seconds: frames closer in time than that stay together.
    Frames with no time share their sequence's group; frames with neither sequence nor time are
    their own group (nothing says they are related).
    """

    def __init__(self, gap_s: float):
        if gap_s < 0:
            raise InputError(f"group gap {gap_s} s must be >= 0")
        self.gap = dt.timedelta(seconds=gap_s)
        self._stream: tuple[str, str, str | None] | None = None
        self._last: dt.datetime | None = None
        self._session: str | None = None

    def key(self, frame_id: int, site: str, camera: str, sequence: str | None, captured_at: dt.datetime | None) -> str:
        if sequence is None and captured_at is None:
            return f"frame:{frame_id}"
        base = f"{site}/{camera}/{sequence if sequence is not None else '-'}"
        if captured_at is None:
            return base
        stream = (site, camera, sequence)
        if stream != self._stream or self._last is None or captured_at - self._last > self.gap:
            self._stream = stream
            self._session = f"{base}@{captured_at.isoformat()}"
        self._last = captured_at
        return self._session  # type: ignore[return-value]
