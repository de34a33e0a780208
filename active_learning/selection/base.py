"""The selection contract: a ``Pool`` of arrays in, a ranked ``SelectionResult`` out.

A strategy is ``strategy(pool, budget, *, seed, **params) -> SelectionResult``: a pure function of
arrays (no database, no files). Index space: a *pool row* is a position ``0..N-1`` in the pool's
arrays; the catalog glue (``curation.selecting``) maps pool rows to frame ids in one place.

Every registered strategy returns exactly ``min(budget, eligible)`` unique eligible pool rows,
ranked (rank 0 = label first), each with a reason, and the same result for the same seed.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from curation.errors import InputError
from curation.registry import Registry

STRATEGIES: Registry[Callable[..., "SelectionResult"]] = Registry("selection strategy")

# How many rows of the embeddings are checked for unit norm (checking all 1M costs ~0.3 s).
_NORM_CHECK_ROWS = 1_024
_NORM_TOLERANCE = 1e-2
REASON_SEPARATOR = " · "


@dataclass
class Pool:
    """Everything a strategy may look at, as arrays over pool rows ``0..N-1``.

    - ``uncertainty`` ``(N,)`` float: higher = more uncertain (the detector's ranking score).
    - ``embeddings`` ``(N, D)`` float32, L2-normalized rows, or None (random/uncertainty/balance
      need none).
    - ``labeled_embeddings`` ``(L, D)`` float32 unit rows of already-labeled frames (may be empty).
    - ``predicted_classes`` ``(N, C)`` int counts of predicted boxes per class (or a list of N
      lists of class names), with ``class_names`` ``(C,)``; None when unknown.
    - ``camera`` ``(N,)`` camera codes or names and ``captured_at_s`` ``(N,)`` float seconds (NaN
      = unknown), for temporal near-duplicates.
    - ``eligible`` ``(N,)`` bool: rows that may be selected (False: labeled, pushed, ...).
    - ``uncertainty_name``: shown in reasons ("top 2% entropy_sum").
    """

    uncertainty: np.ndarray
    embeddings: np.ndarray | None = None
    labeled_embeddings: np.ndarray | None = None
    predicted_classes: Any = None
    class_names: list[str] = field(default_factory=list)
    camera: np.ndarray | None = None
    captured_at_s: np.ndarray | None = None
    eligible: np.ndarray | None = None
    uncertainty_name: str = "uncertainty"

    def __post_init__(self) -> None:
        self.uncertainty = np.ascontiguousarray(self.uncertainty, dtype=np.float32).reshape(-1)
        n = len(self.uncertainty)
        if np.isnan(self.uncertainty).any():
            bad = np.flatnonzero(np.isnan(self.uncertainty))[:5].tolist()
            raise InputError(f"Pool.uncertainty has NaN at pool rows {bad}; score every frame (higher = more uncertain)")
        if self.eligible is None:
            self.eligible = np.ones(n, dtype=bool)
        self.eligible = np.asarray(self.eligible, dtype=bool).reshape(-1)
        _check_len("eligible", self.eligible, n)
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings)
            if emb.ndim != 2 or len(emb) != n:
                raise InputError(f"Pool.embeddings has shape {emb.shape}, expected ({n}, D): one row per pool row")
            if emb.dtype != np.float32 or not emb.flags.c_contiguous:
                emb = np.ascontiguousarray(emb, dtype=np.float32)
            _check_unit("Pool.embeddings", emb)
            self.embeddings = emb
            dim = emb.shape[1]
            lab = np.zeros((0, dim), np.float32) if self.labeled_embeddings is None else self.labeled_embeddings
            lab = np.ascontiguousarray(lab, dtype=np.float32).reshape(-1, dim) if np.size(lab) else np.zeros((0, dim), np.float32)
            _check_unit("Pool.labeled_embeddings", lab)
            self.labeled_embeddings = lab
        if self.predicted_classes is not None:
            self.predicted_classes = _class_matrix(self.predicted_classes, list(self.class_names), n)
        if self.camera is not None:
            self.camera = np.asarray(self.camera).reshape(-1)
            _check_len("camera", self.camera, n)
        if self.captured_at_s is not None:
            self.captured_at_s = np.asarray(self.captured_at_s, dtype=np.float64).reshape(-1)
            _check_len("captured_at_s", self.captured_at_s, n)

    def __len__(self) -> int:
        return len(self.uncertainty)

    @property
    def n_labeled(self) -> int:
        return 0 if self.labeled_embeddings is None else len(self.labeled_embeddings)

    def eligible_rows(self) -> np.ndarray:
        return np.flatnonzero(self.eligible).astype(np.int64)

    def require_embeddings(self, strategy: str) -> np.ndarray:
        if self.embeddings is None:
            raise InputError(f"strategy {strategy!r} needs embeddings; score the frames first (beltcurate score)")
        return self.embeddings

    def class_index(self, names) -> np.ndarray:
        """Column indices of the given class names that exist in ``class_names`` (others ignored)."""
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return np.array(sorted(lookup[name] for name in names if name in lookup), dtype=np.int64)


def _check_len(name: str, array: np.ndarray, n: int) -> None:
    if len(array) != n:
        raise InputError(f"Pool.{name} has {len(array)} entries, expected {n} (one per pool row)")


def _check_unit(name: str, emb: np.ndarray) -> None:
    if len(emb) == 0:
        return
    step = max(1, len(emb) // _NORM_CHECK_ROWS)
    norms = np.linalg.norm(emb[::step][:_NORM_CHECK_ROWS], axis=1)
    if not np.all(np.abs(norms - 1.0) < _NORM_TOLERANCE):
        raise InputError(
            f"{name} must have unit L2-norm rows (got norms {norms.min():.3f}..{norms.max():.3f}); "
            "pass active_learning.embeddings.l2_normalize(vectors)"
        )


def _class_matrix(predicted, class_names: list[str], n: int) -> np.ndarray:
    if isinstance(predicted, np.ndarray) and predicted.ndim == 2:
        if predicted.shape[0] != n or (class_names and predicted.shape[1] != len(class_names)):
            raise InputError(
                f"Pool.predicted_classes has shape {predicted.shape}, expected ({n}, {len(class_names)}) "
                "(frames x class_names)"
            )
        return predicted.astype(np.int32, copy=False)
    rows = list(predicted)
    if len(rows) != n:
        raise InputError(f"Pool.predicted_classes has {len(rows)} entries, expected {n} (one list per pool row)")
    lookup = {name: i for i, name in enumerate(class_names)}
    matrix = np.zeros((n, len(class_names)), dtype=np.int32)
    for row, labels in enumerate(rows):
        for label in labels:
            if label not in lookup:
                raise InputError(f"predicted class {label!r} (pool row {row}) is not in class_names {class_names}")
            matrix[row, lookup[label]] += 1
    return matrix


@dataclass
class SelectionResult:
    """A ranked selection; every per-item array is aligned with ``pool_rows``.

    - ``pool_rows`` ``(k,)`` int64, rank order (index 0 = label first).
    - ``score`` ``(k,)`` float32: what the strategy ranked by (see each strategy; NaN = none).
    - ``uncertainty`` ``(k,)`` float32, copied from the pool.
    - ``distance_to_labeled`` ``(k,)`` float32 cosine distance to the nearest labeled frame (NaN:
      no embeddings or nothing labeled yet).
    - ``cluster`` ``(k,)`` int64 (-1: the strategy did not cluster).
    - ``stage`` ``list[str]``: which step picked the item (``diverse``, ``rare``, ``explore``, ...).
    - ``reasons`` ``list[str]``: why, for humans ("top 2% entropy_sum · 0.41 from nearest labeled").
    - ``duplicates`` ``list[(m,) int64]``: pool rows collapsed into each item as near-duplicates.
    - ``stats``: counts and seconds per stage.
    """

    strategy: str
    pool_rows: np.ndarray
    score: np.ndarray
    uncertainty: np.ndarray
    distance_to_labeled: np.ndarray
    cluster: np.ndarray
    stage: list[str]
    reasons: list[str]
    duplicates: list[np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pool_rows)


@dataclass
class Picks:
    """What a strategy core returns before the common finishing (reasons, distances)."""

    rows: np.ndarray
    score: np.ndarray
    stage: list[str]
    cluster: np.ndarray | None = None
    parts: list[list[str]] | None = None  # strategy-specific reason parts per item
    duplicates: list[np.ndarray] | None = None
    distance_to_labeled: np.ndarray | None = None  # when the strategy computed it already
    stats: dict[str, Any] = field(default_factory=dict)


# Parameters every strategy accepts; ``_run`` handles them before the strategy core runs.
COMMON_PARAMS = ("rare_classes", "min_distance_to_labeled")
DEFAULT_RARE_CLASSES = ("battery",)


def strategy(name: str):
    """Register a core ``core(pool, k, *, rng, seed, **params) -> Picks`` as strategy ``name``.

    The registered function validates the inputs, applies the common parameters (``rare_classes``
    for reasons; ``min_distance_to_labeled`` > 0 makes rows that close to a labeled frame
    ineligible), runs the core with ``k = min(budget, eligible)``, checks the contract (``k``
    unique eligible rows) and adds distances to labeled frames and reasons.
    """

    def decorator(core: Callable[..., Picks]) -> Callable[..., SelectionResult]:
        @functools.wraps(core)
        def run(pool: Pool, budget: int, *, seed: int = 0, **params: Any) -> SelectionResult:
            return _run(name, core, pool, budget, seed, params)

        run.params = _core_params(core)  # type: ignore[attr-defined]
        STRATEGIES.register(name)(run)
        return run

    return decorator


def _core_params(core) -> tuple[str, ...]:
    skip = {"pool", "k", "rng", "seed"}
    own = [p for p in inspect.signature(core).parameters if p not in skip]
    return tuple(sorted(set(own) | set(COMMON_PARAMS)))


def strategy_params(name: str) -> tuple[str, ...]:
    """Parameter names strategy ``name`` accepts (its own plus ``COMMON_PARAMS``), sorted."""
    return STRATEGIES.get(name).params  # type: ignore[attr-defined]


def _run(name: str, core, pool: Pool, budget: int, seed: int, params: dict[str, Any]) -> SelectionResult:
    if not isinstance(pool, Pool):
        raise InputError(f"strategy {name!r} needs a Pool, got {type(pool).__name__}")
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise InputError(f"budget must be a non-negative integer, got {budget!r}")
    valid = _core_params(core)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for strategy {name!r}; valid: {', '.join(valid)}")
    params = dict(params)
    rare_classes = tuple(params.pop("rare_classes", DEFAULT_RARE_CLASSES) or ())
    min_distance = float(params.pop("min_distance_to_labeled", 0.0) or 0.0)
    if "rare_classes" in inspect.signature(core).parameters:
        params["rare_classes"] = rare_classes
    started = time.perf_counter()
    stats: dict[str, Any] = {"seconds": {}}
    if min_distance > 0 and pool.embeddings is not None and pool.n_labeled:
        pool, n_near = exclude_near_labeled(pool, min_distance)
        stats["excluded_near_labeled"] = n_near
        stats["seconds"]["near_labeled"] = round(time.perf_counter() - started, 4)
    k = min(int(budget), int(pool.eligible.sum()))
    rng = np.random.default_rng(seed)
    picks = core(pool, k, rng=rng, seed=seed, **params) if k else _empty_picks()
    rows = np.asarray(picks.rows, dtype=np.int64)
    if len(rows) != k or len(np.unique(rows)) != k or not pool.eligible[rows].all():
        raise AssertionError(  # a bug in a strategy, not a user error
            f"strategy {name!r} broke the selection contract: {len(rows)} rows for k={k}, "
            f"{len(np.unique(rows))} unique, {int((~pool.eligible[rows]).sum())} ineligible"
        )
    finish_started = time.perf_counter()
    result = _finish(name, pool, picks, rare_classes)
    for key, value in stats.items():
        if key == "seconds":
            result.stats.setdefault("seconds", {}).update(value)
        else:
            result.stats[key] = value
    result.stats.setdefault("seconds", {})
    result.stats["seconds"]["finish"] = round(time.perf_counter() - finish_started, 4)
    result.stats["seconds"]["total"] = round(time.perf_counter() - started, 4)
    result.stats.update(budget=int(budget), eligible=int(pool.eligible.sum()), pool=len(pool), selected=k)
    return result


def exclude_near_labeled(pool: Pool, min_distance: float) -> tuple[Pool, int]:
    """A shallow copy of ``pool`` whose rows closer than ``min_distance`` (cosine) to a labeled
    frame are ineligible, and how many rows that removed."""
    from active_learning.faiss_utils import nearest_distance

    rows = pool.eligible_rows()
    distance = nearest_distance(pool.embeddings[rows], pool.labeled_embeddings)
    near = rows[distance < min_distance]
    eligible = pool.eligible.copy()
    eligible[near] = False
    out = copy.copy(pool)
    out.eligible = eligible
    return out, int(len(near))


def _empty_picks() -> Picks:
    return Picks(np.zeros(0, np.int64), np.zeros(0, np.float32), [])


def _finish(name: str, pool: Pool, picks: Picks, rare_classes: tuple[str, ...]) -> SelectionResult:
    rows = np.asarray(picks.rows, dtype=np.int64)
    k = len(rows)
    if picks.distance_to_labeled is not None:
        distance = np.asarray(picks.distance_to_labeled, dtype=np.float32)
    elif pool.embeddings is not None and pool.n_labeled and k:
        from active_learning.faiss_utils import nearest_distance

        distance = nearest_distance(pool.embeddings[rows], pool.labeled_embeddings)
    else:
        distance = np.full(k, np.nan, dtype=np.float32)
    top_fraction = uncertainty_top_fraction(pool, rows)
    rare = _class_names_of(pool, rows, rare_classes)
    parts = picks.parts or [[] for _ in range(k)]
    duplicates = picks.duplicates or [np.zeros(0, np.int64) for _ in range(k)]
    reasons = []
    for i in range(k):
        words = list(parts[i])
        words.append(f"top {format_percent(top_fraction[i])} {pool.uncertainty_name}")
        if np.isfinite(distance[i]):
            words.append(f"{distance[i]:.2f} from nearest labeled")
        if rare[i]:
            words.append(rare[i])
        if len(duplicates[i]):
            words.append(f"stands for {len(duplicates[i])} near-duplicate{'s' if len(duplicates[i]) > 1 else ''}")
        reasons.append(REASON_SEPARATOR.join(words))
    cluster = np.full(k, -1, np.int64) if picks.cluster is None else np.asarray(picks.cluster, dtype=np.int64)
    return SelectionResult(
        strategy=name,
        pool_rows=rows,
        score=np.asarray(picks.score, dtype=np.float32),
        uncertainty=pool.uncertainty[rows],
        distance_to_labeled=distance,
        cluster=cluster,
        stage=list(picks.stage),
        reasons=reasons,
        duplicates=[np.asarray(d, dtype=np.int64) for d in duplicates],
        stats=dict(picks.stats),
    )


def uncertainty_top_fraction(pool: Pool, rows: np.ndarray) -> np.ndarray:
    """``(k,)`` share of eligible rows at least as uncertain as each row (0.02 = top 2%)."""
    ranked = np.sort(pool.uncertainty[pool.eligible])
    n = max(len(ranked), 1)
    at_least = len(ranked) - np.searchsorted(ranked, pool.uncertainty[rows], side="left")
    return np.maximum(at_least, 1) / n


def format_percent(fraction: float) -> str:
    """0.0213 -> '2.1%', 0.2 -> '20%', 0.0004 -> '0.04%' (two significant digits below 10%)."""
    percent = 100.0 * float(fraction)
    if percent >= 10:
        return f"{percent:.0f}%"
    digits = max(0, 1 - int(math.floor(math.log10(percent)))) if percent > 0 else 1
    return f"{percent:.{digits}f}%"


def _class_names_of(pool: Pool, rows: np.ndarray, names: tuple[str, ...]) -> list[str]:
    """Per row: 'predicted battery (rare)' for the rare classes it contains."""
    if pool.predicted_classes is None or not names:
        return ["" for _ in rows]
    columns = pool.class_index(names)
    if len(columns) == 0:
        return ["" for _ in rows]
    present = pool.predicted_classes[np.ix_(rows, columns)] > 0
    labels = [pool.class_names[c] for c in columns]
    return [
        ("predicted " + ", ".join(label for label, hit in zip(labels, flags) if hit) + " (rare)") if flags.any() else ""
        for flags in present
    ]

