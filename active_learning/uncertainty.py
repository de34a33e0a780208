"""Image-level uncertainty from a detector's per-box class probabilities: pure numpy, no I/O.

Every score in ``UNCERTAINTY`` maps a batch of images to a ``(N,)`` float64 array where **higher
means more uncertain** (more worth labeling). ``compute_scores`` runs several at once.

Per-box class distribution ``q`` with ``K = C + 1`` entries (last = background), built by
``box_distributions`` from ``Detections.probs``:
  - ``probs_kind="softmax"`` (Faster R-CNN, SSD): the softmax row itself;
  - ``probs_kind="sigmoid"`` (RetinaNet, FCOS): the C per-class scores ``s`` plus a background
    mass ``1 - max(s)``, renormalised -- two classes scoring 0.45 each make a high-entropy box,
    one class at 0.95 a low-entropy one;
  - ``probs_kind=None`` (imported predictions with only a top score ``p``): ``p`` on the label and
    ``1 - p`` on background. Weaker: it cannot see confusion between two classes.

Per-box measures, each normalised to [0, 1] (0 = certain, 1 = uniform over K):
  - ``entropy``: ``H(q) / log K``;
  - ``least_confidence``: ``(1 - max q) * K / (K - 1)``;
  - ``margin``: ``1 - (q_(1) - q_(2))`` (gap between the two most likely entries).
Aggregated per image over the boxes scoring ``>= min_box_score`` with ``sum`` (grows with the
number of ambiguous objects; range [0, n_boxes]), ``mean`` or ``max`` (range [0, 1]).

Frames with no confident detection (no box with score ``>= CONFIDENT_SCORE``) are either an empty
belt or a complete miss; the three aggregations give them at least ``EMPTY_FRAME_UNCERTAINTY`` so
they rank above frames the model reads confidently, but below frames with several ambiguous boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from curation.errors import InputError
from curation.registry import Registry

# Boxes under this score are NMS leftovers; counting them would make every frame look uncertain.
DEFAULT_MIN_BOX_SCORE = 0.05
# A detection at or above this score counts as "the model saw something".
CONFIDENT_SCORE = 0.5
# Floor for frames without a confident detection: the uncertainty of one half-ambiguous box.
# Raising it pushes empty / missed frames up the ranking.
EMPTY_FRAME_UNCERTAINTY = 0.5
# Matched boxes in flip-TTA need this IoU to count as "the same object".
FLIP_MATCH_IOU = 0.1

MEASURES = ("entropy", "least_confidence", "margin")
AGGREGATIONS = ("sum", "mean", "max")
DEFAULT_SCORE = "entropy_sum"


@dataclass
class ScoreInputs:
    """What every registered score reads.

    predictions: one ``Detections`` per image (any object with ``boxes_xyxy_px``, ``labels``,
        ``scores``, ``probs``, ``probs_kind``).
    n_classes: C, the number of foreground classes.
    class_weights: ``(C,)`` difficulty weights (mean 1) or None for uniform.
    flipped: detections of the horizontally flipped images, already mapped back to the original
        image's coordinates (``Detections.hflip``), or None when no TTA pass ran.
    """

    predictions: Sequence
    n_classes: int
    class_weights: np.ndarray | None = None
    flipped: Sequence | None = None
    min_box_score: float = DEFAULT_MIN_BOX_SCORE
    _cache: dict = field(default_factory=dict, repr=False)

    def kept_distributions(self) -> list[np.ndarray]:
        """Per image: ``(n_kept, C+1)`` distributions of the boxes scoring ``>= min_box_score`` (computed once)."""
        if "q" not in self._cache:
            self._cache["q"] = [box_distributions(det, self.n_classes)[_kept(det, self.min_box_score)]
                                for det in self.predictions]
        return self._cache["q"]

    def box_measure(self, measure: str) -> list[np.ndarray]:
        """Per image: ``(n_kept,)`` values of one per-box measure (computed once per measure)."""
        key = ("measure", measure)
        if key not in self._cache:
            self._cache[key] = [BOX_MEASURES[measure](q) for q in self.kept_distributions()]
        return self._cache[key]


ScoreFn = Callable[[ScoreInputs], np.ndarray]
UNCERTAINTY: Registry[ScoreFn] = Registry("uncertainty score")
NEEDS_FLIP: set[str] = set()


# ----------------------------------------------------------------------------- per-box
def box_distributions(det, n_classes: int) -> np.ndarray:
    """``(n, C+1)`` float64 class distributions of the boxes of ``det`` (last column background)."""
    n = len(det.scores)
    k = n_classes + 1
    if n == 0:
        return np.zeros((0, k))
    kind = det.probs_kind if det.probs is not None else None
    if kind == "softmax":
        q = np.asarray(det.probs, dtype=np.float64)
        if q.shape[1] != k:
            raise InputError(f"softmax probs have {q.shape[1]} columns, expected C+1 = {k} (last = background)")
    elif kind == "sigmoid":
        s = np.clip(np.asarray(det.probs, dtype=np.float64), 0.0, 1.0)
        if s.shape[1] != n_classes:
            raise InputError(f"sigmoid probs have {s.shape[1]} columns, expected C = {n_classes}")
        q = np.concatenate([s, 1.0 - s.max(axis=1, keepdims=True)], axis=1)
    else:
        p = np.clip(np.asarray(det.scores, dtype=np.float64), 0.0, 1.0)
        q = np.zeros((n, k))
        q[np.arange(n), np.asarray(det.labels)] = p
        q[:, -1] = 1.0 - p
    q = np.clip(q, 0.0, None)
    total = q.sum(axis=1, keepdims=True)
    return q / np.where(total > 0, total, 1.0)


def box_entropy(q: np.ndarray) -> np.ndarray:
    """``(n,)`` normalised entropy in [0, 1] of ``(n, K)`` distributions; higher = more uncertain."""
    k = q.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, -q * np.log(q), 0.0)
    return terms.sum(axis=1) / np.log(k)


def box_least_confidence(q: np.ndarray) -> np.ndarray:
    """``(n,)`` in [0, 1]: ``(1 - max q) * K / (K - 1)``; higher = more uncertain."""
    k = q.shape[1]
    return (1.0 - q.max(axis=1)) * k / (k - 1)


def box_margin(q: np.ndarray) -> np.ndarray:
    """``(n,)`` in [0, 1]: one minus the gap between the two most likely classes; higher = more uncertain."""
    if q.shape[0] == 0:
        return np.zeros(0)
    top2 = -np.sort(-q, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


BOX_MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": box_entropy,
    "least_confidence": box_least_confidence,
    "margin": box_margin,
}


# ----------------------------------------------------------------------------- image-level
def _kept(det, min_box_score: float) -> np.ndarray:
    return np.asarray(det.scores) >= min_box_score


def _aggregate(values: np.ndarray, how: str) -> float:
    if values.size == 0:
        return 0.0
    if how == "sum":
        return float(values.sum())
    if how == "mean":
        return float(values.mean())
    return float(values.max())


def _has_confident(det) -> bool:
    scores = np.asarray(det.scores)
    return bool(scores.size and scores.max() >= CONFIDENT_SCORE)


def _make_aggregate(measure: str, how: str) -> ScoreFn:
    def score(inputs: ScoreInputs) -> np.ndarray:
        out = np.zeros(len(inputs.predictions))
        for i, (det, values) in enumerate(zip(inputs.predictions, inputs.box_measure(measure))):
            value = _aggregate(values, how)
            out[i] = value if _has_confident(det) else max(value, EMPTY_FRAME_UNCERTAINTY)
        return out

    score.__name__ = f"{measure}_{how}"
    score.__doc__ = (
        f"Per-image {how} of per-box {measure} over boxes with score >= min_box_score; higher = more "
        f"uncertain; range [0, {'n_boxes' if how == 'sum' else '1'}]. Frames without a confident "
        f"detection score at least EMPTY_FRAME_UNCERTAINTY."
    )
    return score


for _measure in MEASURES:
    for _how in AGGREGATIONS:
        UNCERTAINTY.register(f"{_measure}_{_how}")(_make_aggregate(_measure, _how))


@UNCERTAINTY.register("entropy_weighted_sum")
def entropy_weighted_sum(inputs: ScoreInputs) -> np.ndarray:
    """Class-difficulty weighted sum of box entropies (PPAL-style); higher = more uncertain.

    Each box's entropy is multiplied by the expected difficulty weight of its foreground classes,
    ``sum_c q_c w_c / sum_c q_c``, so ambiguity about a rare or hard class (low AP, few examples)
    counts more. With uniform weights this equals ``entropy_sum``. Range [0, n_boxes * max(w)].
    """
    weights = np.ones(inputs.n_classes) if inputs.class_weights is None else np.asarray(inputs.class_weights, float)
    if weights.shape != (inputs.n_classes,):
        raise InputError(f"class_weights has shape {weights.shape}, expected ({inputs.n_classes},) -- one per class")
    out = np.zeros(len(inputs.predictions))
    for i, (det, q, entropy) in enumerate(zip(inputs.predictions, inputs.kept_distributions(),
                                              inputs.box_measure("entropy"))):
        fg = q[:, :-1]
        fg_mass = fg.sum(axis=1)
        expected_w = np.where(fg_mass > 0, (fg @ weights) / np.where(fg_mass > 0, fg_mass, 1), 1.0)
        value = float((entropy * expected_w).sum()) if q.shape[0] else 0.0
        out[i] = value if _has_confident(det) else max(value, EMPTY_FRAME_UNCERTAINTY * float(weights.mean()))
    return out


@UNCERTAINTY.register("no_confident_detection")
def no_confident_detection(inputs: ScoreInputs) -> np.ndarray:
    """``1 - max box score`` (1.0 for a frame without boxes): high when the model sees nothing surely.

    Range [0, 1], higher = more uncertain. Finds frames the detector may be missing entirely
    (a new packaging type, a dark new site) that the per-box scores cannot rank.
    """
    return np.array([1.0 - float(np.max(det.scores)) if len(det.scores) else 1.0 for det in inputs.predictions])


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of two sets of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _one_way_instability(src, dst, min_box_score: float) -> tuple[float, float]:
    """Score-weighted ``sum(s * (1 - best same-class IoU))`` over src boxes, and ``sum(s)``."""
    keep_src, keep_dst = _kept(src, min_box_score), _kept(dst, min_box_score)
    scores = np.asarray(src.scores, dtype=np.float64)[keep_src]
    if scores.size == 0:
        return 0.0, 0.0
    iou = box_iou_xyxy(src.boxes_xyxy_px[keep_src], dst.boxes_xyxy_px[keep_dst])
    same = np.asarray(src.labels)[keep_src][:, None] == np.asarray(dst.labels)[keep_dst][None, :]
    iou = np.where(same, iou, 0.0)
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(scores.size)
    best = np.where(best >= FLIP_MATCH_IOU, best, 0.0)
    return float((scores * (1.0 - best)).sum()), float(scores.sum())


@UNCERTAINTY.register("flip_instability")
def flip_instability(inputs: ScoreInputs) -> np.ndarray:
    """Localisation instability under horizontal-flip TTA, range [0, 1]; higher = less stable.

    Boxes of the original and of the flipped pass (mapped back) are matched to the best same-class
    box of the other pass; the score is the detection-score-weighted mean of ``1 - IoU`` over both
    directions (an unmatched box counts 1). 0 when both passes agree exactly or find nothing.
    """
    if inputs.flipped is None:
        raise InputError("flip_instability needs the flipped pass; enable score.tta_flip (--tta-flip)")
    out = np.zeros(len(inputs.predictions))
    for i, (det, flipped) in enumerate(zip(inputs.predictions, inputs.flipped, strict=True)):
        num_a, den_a = _one_way_instability(det, flipped, inputs.min_box_score)
        num_b, den_b = _one_way_instability(flipped, det, inputs.min_box_score)
        out[i] = (num_a + num_b) / (den_a + den_b) if den_a + den_b > 0 else 0.0
    return out


NEEDS_FLIP.add("flip_instability")


# ----------------------------------------------------------------------------- helpers
def class_difficulty_weights(classes: Sequence[str], *, per_class_ap: Mapping[str, float] | None = None,
                             class_counts: Mapping[str, float] | None = None, gamma: float = 1.0) -> np.ndarray:
    """``(C,)`` difficulty weights with mean 1 for ``entropy_weighted_sum``.

    From per-class AP (preferred; e.g. the ``eval`` block a checkpoint carries): ``w_c ∝ (1 - AP_c
    + 0.05) ** gamma`` -- a class the model detects poorly counts more. Else from training counts:
    ``w_c ∝ (count_c + 1) ** -0.5 * gamma``-style inverse frequency. Classes missing from the
    mapping get the mean weight. Neither given: uniform ones.
    """
    n = len(classes)
    if per_class_ap:
        raw = np.array([(1.0 - float(per_class_ap[c]) + 0.05) ** gamma if c in per_class_ap and per_class_ap[c] is not None
                        and per_class_ap[c] >= 0 else np.nan for c in classes])
    elif class_counts:
        raw = np.array([(float(class_counts[c]) + 1.0) ** (-0.5 * gamma) if c in class_counts else np.nan for c in classes])
    else:
        return np.ones(n)
    if np.all(np.isnan(raw)):
        return np.ones(n)
    raw = np.where(np.isnan(raw), np.nanmean(raw), raw)
    return raw / raw.mean()


def compute_scores(predictions: Sequence, *, n_classes: int, names: Sequence[str] | None = None,
                   class_weights: np.ndarray | None = None, flipped: Sequence | None = None,
                   min_box_score: float = DEFAULT_MIN_BOX_SCORE) -> dict[str, np.ndarray]:
    """Run the named scores (default: every registered one that the inputs allow) -> name: ``(N,)``.

    Scores in ``NEEDS_FLIP`` are skipped when ``flipped`` is None and ``names`` is not given; asked
    for by name without ``flipped`` they raise InputError.
    """
    inputs = ScoreInputs(predictions, n_classes, class_weights, flipped, min_box_score)
    if names is None:
        names = [name for name in UNCERTAINTY.names() if flipped is not None or name not in NEEDS_FLIP]
    return {name: UNCERTAINTY.get(name)(inputs) for name in names}
