"""Active-learning simulation with an oracle: do the strategies earn their keep against random?

The labels of every frame are known; annotators are simulated by revealing them. For each seed:

    round 0   random initial labeled set (the same for every strategy), train from scratch,
              evaluate on the fixed test split, score the pool once -- shared by all strategies
    round r   for each strategy: select ``budget`` frames from its own unlabeled pool with its
              model of round r-1, reveal their labels, fine-tune that model (warm start, the same
              fixed iteration budget for every strategy), evaluate on the test split, score the
              pool for the next round

Every strategy sees the same initial set, the same training budget and the same test split; only
what it selects differs. The curves are mAP vs labeled frames, mean and spread over seeds.

Summaries (pure functions of the curves, see ``curve_auc`` and ``labels_to_reach``):
  - area under the learning curve, normalised by the x range (= mean mAP over the labeling range);
  - label efficiency: labeled frames a strategy needs to reach random's final mAP (linear
    interpolation between rounds; ``None`` when it never gets there).

Index spaces: a *pool row* is a position in ``SimData.pool_ids`` (the frames that may be labeled);
``image_id`` is the COCO id in the data set. Selection strategies see pool rows only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

import numpy as np

from curation.errors import InputError

# The rare class whose AP is tracked next to mAP when the data has it (synthetic belts: ~1% of
# objects). Other data: the least frequent class of the pool.
DEFAULT_RARE_CLASS = "battery"
# Curves are summarised for these metrics; "map50" is the headline (the goal is stated on it).
METRICS = ("map50", "map", "rare_ap50")
HEADLINE_METRIC = "map50"


# ----------------------------------------------------------------------------- data
@dataclass
class SimData:
    """A labeled set split into a fixed test split and a pool the simulation may label.

    ``coco``: the whole data set as a COCO dict (image ``file_name`` relative to ``image_root`` or
    absolute). ``pool_ids`` / ``test_ids``: COCO image ids. ``groups``: image id -> group key
    (belt sequence; frames of one group never straddle pool and test).
    """

    coco: dict
    image_root: Path
    classes: list[str]
    pool_ids: np.ndarray
    test_ids: np.ndarray
    groups: dict[int, str]
    source: str

    @property
    def images_by_id(self) -> dict[int, dict]:
        return {img["id"]: img for img in self.coco["images"]}

    def pool_meta(self) -> dict[str, np.ndarray]:
        """Per pool row: ``camera`` (str), ``captured_at_s`` (float seconds, NaN unknown), ``group``."""
        by_id = self.images_by_id
        cameras, times, groups = [], [], []
        for image_id in self.pool_ids:
            img = by_id[int(image_id)]
            cameras.append(f"{img.get('site', '')}/{img.get('camera', '')}")
            times.append(_epoch_seconds(img.get("captured_at")))
            groups.append(self.groups[int(image_id)])
        return {"camera": np.asarray(cameras), "captured_at_s": np.asarray(times, dtype=np.float64),
                "group": np.asarray(groups)}

    def gt_by_id(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """image id -> (``(n, 4)`` xyxy px boxes, ``(n,)`` 0-based class indices)."""
        cat_index = {c["id"]: self.classes.index(c["name"]) for c in self.coco["categories"]}
        boxes: dict[int, list] = {img["id"]: [] for img in self.coco["images"]}
        labels: dict[int, list] = {img["id"]: [] for img in self.coco["images"]}
        for ann in self.coco["annotations"]:
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0) or w <= 1 or h <= 1:
                continue
            boxes[ann["image_id"]].append([x, y, x + w, y + h])
            labels[ann["image_id"]].append(cat_index[ann["category_id"]])
        return {k: (np.asarray(boxes[k], np.float32).reshape(-1, 4), np.asarray(labels[k], np.int64)) for k in boxes}


def _epoch_seconds(value) -> float:
    if not value:
        return float("nan")
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return float("nan")


def read_labeled_set(path: str | os.PathLike) -> tuple[dict, Path, str]:
    """A labeled COCO or YOLO set -> (COCO dict, image root, source kind).

    ``path``: a COCO ``.json``, a folder with ``annotations.json`` (images under ``images/``), or a
    YOLO folder with ``data.yaml``. YOLO images keep their split in ``image["split"]`` and absolute
    ``file_name`` paths.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        coco_json = path
    elif (path / "annotations.json").is_file():
        coco_json = path / "annotations.json"
    elif path.is_dir() and any((path / name).is_file() for name in ("data.yaml", "dataset.yaml", "data.yml")):
        return _yolo_as_coco(path), Path("/"), "yolo"
    else:
        raise InputError(f"--data {str(path)!r} is neither a COCO file, a folder with annotations.json, nor a YOLO "
                         "folder with data.yaml; export a labeled set with 'beltcurate export' or 'beltcurate synth'")
    try:
        coco = json.loads(coco_json.read_text())
        coco["images"], coco["categories"]  # noqa: B018 - presence check
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{str(coco_json)!r} is not a COCO detection file ({exc})") from exc
    coco.setdefault("annotations", [])
    image_root = coco_json.parent / "images"
    if not image_root.is_dir():
        image_root = coco_json.parent
    return coco, image_root, "coco"


def _yolo_as_coco(path: Path) -> dict:
    from exporters import yolo

    class_names = yolo.dataset_class_names(path)
    images, annotations = [], []
    for image_id, item in enumerate(yolo.read_dataset(path), start=1):
        if item.width <= 0:
            continue  # unreadable header: the reader recorded a problem; nothing to simulate with
        images.append({"id": image_id, "file_name": item.image_path, "width": item.width, "height": item.height,
                       "split": item.split})
        for box in item.boxes:
            x, y, w, h = (float(v) for v in box.xywh_px)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0, "category_id": class_names.index(box.label) + 1})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]}


def group_key(image: dict) -> str:
    """The split group of a COCO image entry: its belt sequence, else the image itself."""
    return str(image.get("sequence") or image.get("group") or f"image:{image['id']}")


def prepare_data(path: str | os.PathLike, *, test_frames: int = 1000, pool_frames: int | None = None,
                 split_seed: int = 0) -> SimData:
    """Load a labeled set and fix its test split and pool (independent of the simulation seeds).

    A YOLO set with a ``test`` split uses it as the test split. Otherwise whole groups (belt
    sequences) go to the test split, stratified by class so rare classes land there too, until it
    holds about ``test_frames`` frames. ``pool_frames`` caps the pool (whole groups, seeded).
    """
    from exporters.splits import assign_splits

    coco, image_root, kind = read_labeled_set(path)
    classes = [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    images = coco["images"]
    if not images:
        raise InputError(f"--data {str(path)!r} has no images")
    groups = {img["id"]: group_key(img) for img in images}
    explicit_test = [img["id"] for img in images if img.get("split") == "test"]
    if explicit_test:
        test = set(explicit_test)
    else:
        n = len(images)
        if test_frames >= n:
            raise InputError(f"--test-frames {test_frames} leaves no pool in {n} frames; lower it")
        keys = sorted(set(groups.values()))
        index = {k: i for i, k in enumerate(keys)}
        sizes = np.zeros(len(keys))
        counts = np.zeros((len(keys), len(classes)))
        cat_index = {c["id"]: classes.index(c["name"]) for c in coco["categories"]}
        for img in images:
            sizes[index[groups[img["id"]]]] += 1
        for ann in coco["annotations"]:
            counts[index[groups[ann["image_id"]]], cat_index[ann["category_id"]]] += 1
        fraction = test_frames / n
        placed = assign_splits(keys, sizes, counts, (1.0 - fraction, 0.0, fraction), seed=split_seed)
        test = {img["id"] for img in images if placed[groups[img["id"]]] == "test"}
    pool = [img["id"] for img in images if img["id"] not in test]
    if pool_frames is not None and len(pool) > pool_frames:
        rng = np.random.default_rng(split_seed)
        pool_groups = sorted({groups[i] for i in pool})
        members: dict[str, list[int]] = {}
        for image_id in pool:
            members.setdefault(groups[image_id], []).append(image_id)
        kept: list[int] = []
        for g in rng.permutation(len(pool_groups)):
            if len(kept) >= pool_frames:
                break
            kept.extend(members[pool_groups[g]])
        pool = sorted(kept)
    return SimData(coco, image_root, classes, np.asarray(sorted(pool), np.int64), np.asarray(sorted(test), np.int64),
                   groups, str(path))


def write_coco_subset(data: SimData, image_ids: Iterable[int], out: Path) -> Path:
    """A COCO file with only ``image_ids`` (and their annotations), written atomically."""
    wanted = {int(i) for i in image_ids}
    subset = {
        "images": [img for img in data.coco["images"] if img["id"] in wanted],
        "annotations": [a for a in data.coco["annotations"] if a["image_id"] in wanted],
        "categories": data.coco["categories"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(subset))
    tmp.replace(out)
    return out


# ----------------------------------------------------------------------------- config and results
@dataclass
class SimConfig:
    """One simulation. Iteration budgets are fixed (not time-based) so runs are comparable.

    ``initial_iters``: round-0 training from scratch; ``finetune_iters``: every later round,
    warm-started from the same strategy's previous model, on all its labeled frames.
    """

    strategies: list[str]
    rounds: int = 5
    budget: int = 40
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    initial: int = 100
    test_frames: int = 1000
    pool_frames: int | None = None
    arch: str = "fcos_mnv3s"
    input_size: tuple[int, int] = (256, 192)
    batch_size: int = 8
    initial_iters: int = 300
    finetune_iters: int = 50
    lr: float = 2e-3
    finetune_lr: float = 1e-3
    uncertainty: str = "entropy_sum"
    pca_dim: int = 128  # score.pca_dim
    rare_class: str | None = None
    strategy_params: dict[str, dict] = field(default_factory=dict)
    split_seed: int = 0

    def validate(self, data: SimData | None = None) -> "SimConfig":
        from active_learning.selection import STRATEGIES
        from active_learning.uncertainty import UNCERTAINTY

        if not self.strategies:
            raise InputError("--strategies is empty; name at least one, e.g. random,hybrid")
        for spec in self.strategies:
            STRATEGIES.get(parse_strategy(spec)[0])  # UnknownNameError lists the valid names
        UNCERTAINTY.get(self.uncertainty)
        if self.rounds < 1 or self.budget < 1 or self.initial < 1:
            raise InputError("--rounds, --budget and --initial must be at least 1")
        if not self.seeds:
            raise InputError("--seeds must be at least 1")
        if data is not None:
            need = self.initial + self.rounds * self.budget
            if need > len(data.pool_ids):
                raise InputError(f"the pool has {len(data.pool_ids)} frames but --initial {self.initial} + --rounds "
                                 f"{self.rounds} x --budget {self.budget} = {need}; lower them or use more data")
        return self


def rare_class_of(data: SimData, requested: str | None) -> str:
    """The class whose AP is tracked as ``rare_ap50``: requested, else battery, else the pool's rarest."""
    if requested:
        if requested not in data.classes:
            raise InputError(f"--rare-class {requested!r} is not one of {data.classes}")
        return requested
    if DEFAULT_RARE_CLASS in data.classes:
        return DEFAULT_RARE_CLASS
    counts = np.zeros(len(data.classes))
    cat_index = {c["id"]: data.classes.index(c["name"]) for c in data.coco["categories"]}
    pool = set(int(i) for i in data.pool_ids)
    for ann in data.coco["annotations"]:
        if ann["image_id"] in pool:
            counts[cat_index[ann["category_id"]]] += 1
    return data.classes[int(np.argmin(counts))]


# ----------------------------------------------------------------------------- curve math (pure)
def curve_auc(labeled: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` over ``labeled`` divided by the x range: the mean metric over
    the labeling range (same units as the metric). One point: that point's value."""
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"curve_auc needs equal, non-empty x and y (got {x.shape} and {y.shape})")
    if x.size == 1:
        return float(y[0])
    if np.any(np.diff(x) <= 0):
        raise ValueError("curve_auc needs strictly increasing labeled counts")
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / float(x[-1] - x[0])


def labels_to_reach(labeled: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """Labeled frames at which the curve first reaches ``target``, linearly interpolated between
    the two rounds around the crossing; the first point if it already starts there; ``None`` if
    the curve never reaches it."""
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("labels_to_reach needs equal, non-empty x and y")
    if y[0] >= target:
        return float(x[0])
    for i in range(1, x.size):
        if y[i] >= target:
            x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
            return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    return None


def summarize(rounds: list[dict], strategies: Sequence[str], *, reference: str = "random",
              metrics: Sequence[str] = METRICS) -> dict:
    """Per strategy and metric: mean/std curve over seeds, AUC (mean ± std over seeds), labels to
    reach the reference's final mean value and the ratio to the reference's labels.

    ``rounds``: records ``{"seed", "strategy", "round", "labeled", metric: value, ...}``. Only seeds
    that completed every round present for all strategies count, so partial runs compare like with
    like; ``seeds_used`` says which.
    """
    by_key: dict[tuple[str, int], dict[int, dict]] = {}
    for rec in rounds:
        by_key.setdefault((rec["strategy"], rec["seed"]), {})[rec["round"]] = rec
    seeds = sorted({rec["seed"] for rec in rounds})
    # Rounds every strategy has for a seed; a seed counts up to the last round all strategies reached.
    common_rounds: dict[int, int] = {}
    for seed in seeds:
        counts = [max(by_key.get((s, seed), {-1: None}).keys()) for s in strategies]
        last = min(counts)
        if last >= 1:
            common_rounds[seed] = last
    if not common_rounds:
        return {"seeds_used": [], "rounds_used": 0, "strategies": {}}
    n_rounds = min(common_rounds.values())
    seeds_used = sorted(common_rounds)
    out: dict[str, Any] = {"seeds_used": seeds_used, "rounds_used": n_rounds, "reference": reference,
                           "strategies": {}}
    for metric in metrics:
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for strategy in strategies:
            xs = np.array([[by_key[(strategy, s)][r]["labeled"] for r in range(n_rounds + 1)] for s in seeds_used], float)
            ys = np.array([[by_key[(strategy, s)][r].get(metric, float("nan")) for r in range(n_rounds + 1)]
                           for s in seeds_used], float)
            curves[strategy] = (xs, ys)
        ref_target = None
        if reference in curves:
            ref_target = float(np.mean(curves[reference][1][:, -1]))
        for strategy, (xs, ys) in curves.items():
            x = xs[0]
            mean, std = ys.mean(axis=0), ys.std(axis=0)
            aucs = [curve_auc(x, y) for y in ys]
            entry = {"labeled": x.tolist(), "mean": mean.round(4).tolist(), "std": std.round(4).tolist(),
                     "auc_mean": round(float(np.mean(aucs)), 4), "auc_std": round(float(np.std(aucs)), 4),
                     "final_mean": round(float(mean[-1]), 4)}
            if ref_target is not None:
                reach = labels_to_reach(x, mean, ref_target)
                ref_labels = float(x[-1])
                entry["labels_to_reference_final"] = None if reach is None else round(reach, 1)
                entry["label_ratio_vs_reference"] = None if reach is None else round(reach / ref_labels, 3)
                added_ref = ref_labels - x[0]
                entry["added_label_ratio_vs_reference"] = (None if reach is None or added_ref <= 0
                                                           else round((reach - x[0]) / added_ref, 3))
                entry["reference_final"] = round(ref_target, 4)
            out["strategies"].setdefault(strategy, {})[metric] = entry
    return out


# ----------------------------------------------------------------------------- the loop (effects)
@dataclass
class PoolScores:
    """A model's view of the whole pool. ``uncertainty`` ``(N,)`` higher = more uncertain;
    ``embeddings`` ``(N, D)`` float32 unit rows (PCA-reduced); ``predictions``: Detections per row."""

    uncertainty: np.ndarray
    embeddings: np.ndarray
    predictions: list
    seconds: float


def score_pool(checkpoint: Path, data: SimData, config: SimConfig, *, batch_size: int = 8) -> PoolScores:
    """Run the detector over every pool frame: uncertainty, embeddings, predictions."""
    from active_learning.detectors import load_detector
    from active_learning.embeddings import l2_normalize, pca_reduce
    from active_learning.train import read_rgb
    from active_learning.uncertainty import compute_scores

    detector = load_detector(checkpoint)
    by_id = data.images_by_id
    started = time.perf_counter()
    predictions = []
    for start in range(0, len(data.pool_ids), batch_size):
        batch = [by_id[int(i)] for i in data.pool_ids[start: start + batch_size]]
        predictions.extend(detector.predict([read_rgb(data.image_root / img["file_name"]) for img in batch]))
    uncertainty = compute_scores(predictions, n_classes=len(detector.classes), names=[config.uncertainty])[config.uncertainty]
    raw = np.stack([det.embedding for det in predictions]).astype(np.float32)
    embeddings = l2_normalize(pca_reduce(l2_normalize(raw), config.pca_dim, seed=0))
    return PoolScores(uncertainty.astype(np.float64), embeddings, predictions, time.perf_counter() - started)


def predicted_class_counts(predictions: Sequence, n_classes: int, min_score: float) -> np.ndarray:
    """``(N, C)`` int32 counts of boxes per class scoring at least ``min_score`` (for class balance)."""
    counts = np.zeros((len(predictions), n_classes), np.int32)
    for row, det in enumerate(predictions):
        labels = det.labels[det.scores >= min_score]
        np.add.at(counts[row], labels, 1)
    return counts


# A predicted box counts toward a frame's classes (rare-class quota) from this score on: the
# review's false-positive view starts at the same confidence (review.fp_min_confidence).
PREDICTED_CLASS_MIN_SCORE = 0.3


def parse_strategy(spec: str) -> tuple[str, dict]:
    """``"hybrid:diversity=kcenter:rare_quota=0"`` -> ``("hybrid", {"diversity": "kcenter", "rare_quota": 0.0})``:
    a strategy with its own parameters, so variants of one strategy can run side by side
    (numbers become floats, everything else stays a string)."""
    name, *pairs = spec.split(":")
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"strategy {spec!r}: parameters are key=value after the name, e.g. hybrid:diversity=kcenter")
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = value
    return name, params


def select_rows(strategy: str, scores: PoolScores | None, labeled_mask: np.ndarray, budget: int, *, seed: int,
                meta: dict[str, np.ndarray], classes: Sequence[str], uncertainty_name: str = "uncertainty",
                params: dict | None = None) -> np.ndarray:
    """Ask strategy ``strategy`` for ``budget`` unlabeled pool rows (``(k,)`` int64, rank order).

    Labeled rows are ineligible and their embeddings are the ``labeled_embeddings`` the diversity
    steps measure distance from. ``scores`` None (random): no model output is passed.
    """
    from active_learning.selection import STRATEGIES, Pool

    labeled_mask = np.asarray(labeled_mask, bool)
    n = len(labeled_mask)
    if scores is None:
        pool = Pool(uncertainty=np.zeros(n), eligible=~labeled_mask, camera=meta["camera"],
                    captured_at_s=meta["captured_at_s"], class_names=list(classes))
    else:
        pool = Pool(uncertainty=scores.uncertainty, embeddings=scores.embeddings,
                    labeled_embeddings=scores.embeddings[labeled_mask],
                    predicted_classes=predicted_class_counts(scores.predictions, len(classes), PREDICTED_CLASS_MIN_SCORE),
                    class_names=list(classes), camera=meta["camera"], captured_at_s=meta["captured_at_s"],
                    eligible=~labeled_mask, uncertainty_name=uncertainty_name)
    name, spec_params = parse_strategy(strategy)
    result = STRATEGIES.get(name)(pool, budget, seed=seed, **{**(params or {}), **spec_params})
    rows = np.asarray(result.pool_rows, dtype=np.int64)
    if len(np.unique(rows)) != len(rows) or labeled_mask[rows].any():
        raise RuntimeError(f"strategy {strategy!r} returned duplicate or already-labeled rows")
    return rows


def _needs_model(strategy: str) -> bool:
    return strategy != "random"


StepLock = Callable[[], ContextManager]


def _no_lock() -> ContextManager:
    return contextlib.nullcontext()


class ReferenceBackend:
    """Training, evaluation and pool scoring with the reference trainer (``active_learning.train``).

    The simulation loop talks to this object only, so the bookkeeping can be tested with a cheap
    backend of fixed arrays. ``train`` returns seconds spent; ``evaluate`` the ``train.evaluate``
    dict; ``score`` a ``PoolScores``.
    """

    def __init__(self, data: SimData, config: SimConfig, test_json: Path):
        self.data, self.config, self.test_json = data, config, test_json

    def train(self, train_json: Path, out: Path, *, init: Path | None, iters: int, seed: int) -> float:
        from active_learning.train import train_detector

        c = self.config
        if init is None:
            summary = train_detector(train_json, self.data.image_root, out, arch=c.arch, max_iters=iters, seed=seed,
                                     batch_size=c.batch_size, lr=c.lr, input_size=c.input_size, classes=self.data.classes)
        else:
            summary = train_detector(train_json, self.data.image_root, out, init_checkpoint=init, max_iters=iters,
                                     seed=seed, batch_size=c.batch_size, lr=c.finetune_lr)
        return float(summary.seconds)

    def evaluate(self, checkpoint: Path) -> dict:
        from active_learning.train import evaluate

        return evaluate(checkpoint, self.test_json, self.data.image_root)

    def score(self, checkpoint: Path) -> PoolScores:
        return score_pool(checkpoint, self.data, self.config)


def initial_rows(n_pool: int, initial: int, seed: int) -> np.ndarray:
    """The round-0 labeled pool rows of ``seed``: the same for every strategy, sorted ``(initial,)`` int64."""
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(n_pool, size=initial, replace=False)).astype(np.int64)


def run_simulation(data: SimData, config: SimConfig, work_dir: str | os.PathLike, *,
                   step_lock: StepLock = _no_lock, log: Callable[[str], None] = lambda m: None,
                   on_update: Callable[[dict], None] | None = None, backend=None,
                   lock_per: str = "round", resume: bool = False) -> dict:
    """Run every seed x strategy x round; returns the results dict (also written to
    ``work_dir/results.json`` after every round, so an interrupted run keeps what finished).

    ``step_lock()`` guards the heavy work -- e.g. a file lock shared with other CPU-heavy jobs on
    the machine -- held per round (``lock_per="round"``: round 0 of a seed, or one round of every
    strategy, a few minutes) or per train/evaluate/score step (``"step"``). ``backend``: default
    ``ReferenceBackend``.

    ``resume``: continue the run in ``work_dir`` -- every (seed, strategy, round) already in its
    ``results.json`` is kept as it is (not retrained, not duplicated) and the rest runs from the
    last finished checkpoint of each strategy. Selections and training seeds depend only on (seed,
    round), so a resumed run picks the same frames an uninterrupted one would. A ``results.json``
    of a different configuration or data is refused (``InputError``).
    """
    if lock_per not in ("round", "step"):
        raise InputError(f"lock_per must be 'round' or 'step', got {lock_per!r}")
    round_lock, step_lock = (step_lock, _no_lock) if lock_per == "round" else (_no_lock, step_lock)
    config.validate(data)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rare = rare_class_of(data, config.rare_class)
    test_json = write_coco_subset(data, data.test_ids, work / "test.json")
    backend = backend or ReferenceBackend(data, config, test_json)
    meta = data.pool_meta()
    n_pool = len(data.pool_ids)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "config": {**asdict(config), "input_size": list(config.input_size)},
        "data": {"source": data.source, "classes": data.classes, "pool_frames": n_pool,
                 "test_frames": int(len(data.test_ids)), "rare_class": rare,
                 "test_objects_rare": _count_class(data, data.test_ids, rare)},
        "rounds": [], "selections": [], "timings": {"train_s": [], "finetune_s": [], "eval_s": [], "score_s": []},
        "complete": False,
    }
    done_rounds: dict[tuple, dict] = {}
    done_selections: dict[tuple, dict] = {}
    previous_s = 0.0
    if resume and (work / "results.json").is_file():
        previous = _previous_results(work / "results.json", results)
        done_rounds = {(r["seed"], r["strategy"], r["round"]): r for r in previous["rounds"]}
        done_selections = {(x["seed"], x["strategy"], x["round"]): x for x in previous["selections"]}
        results["timings"] = previous["timings"]
        previous_s = float(previous.get("elapsed_s") or 0.0)
        log(f"resuming: {len(done_rounds)} finished (seed, strategy, round) results kept")

    def record(seed: int, strategy: str, rnd: int, labeled: int, ev: dict, extra: dict) -> None:
        rec = {"seed": seed, "strategy": strategy, "round": rnd, "labeled": labeled, "map50": ev["map50"],
               "map": ev["map"], "rare_ap50": ev["per_class_ap50"].get(rare, float("nan")),
               "per_class_ap50": ev["per_class_ap50"], **extra}
        results["rounds"].append(rec)

    def flush() -> None:
        results["elapsed_s"] = round(previous_s + time.perf_counter() - started, 1)
        results["summary"] = summarize(results["rounds"], config.strategies)
        tmp = work / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1, default=_json_default))
        tmp.replace(work / "results.json")
        if on_update:
            on_update(results)

    def timed(kind: str, fn, *args, **kwargs):
        with step_lock():
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            results["timings"][kind].append(round(time.perf_counter() - t0, 1))
        return out

    def rare_ap(ev: dict) -> float:
        return ev["per_class_ap50"].get(rare, float("nan"))

    for seed in config.seeds:
        seed_dir = work / f"seed{seed}"
        labeled0 = np.zeros(n_pool, bool)
        labeled0[initial_rows(n_pool, config.initial, seed)] = True
        ckpt0 = seed_dir / "round0.pt"
        train_json = write_coco_subset(data, data.pool_ids[labeled0], seed_dir / "round0.json")
        kept0 = [done_rounds.get((seed, s, 0)) for s in config.strategies]
        if all(kept0) and ckpt0.is_file():
            results["rounds"].extend(kept0)
            scores0 = _STALE  # scored again only if a strategy still has rounds to run
            log(f"seed {seed}: round 0 kept from the interrupted run")
        else:
            log(f"seed {seed}: round 0, training from scratch on {config.initial} frames ({config.initial_iters} iterations)")
            with round_lock():
                train_s = timed("train_s", backend.train, train_json, ckpt0, init=None, iters=config.initial_iters, seed=seed)
                ev0 = timed("eval_s", backend.evaluate, ckpt0)
                scores0 = timed("score_s", backend.score, ckpt0) if any(_needs_model(s) for s in config.strategies) else None
            for strategy in config.strategies:
                record(seed, strategy, 0, config.initial, ev0, {"train_s": train_s, "initial_pool_rows": np.flatnonzero(labeled0).tolist()})
            log(f"seed {seed}: round 0 mAP@0.5 {ev0['map50']:.3f} mAP {ev0['map']:.3f} {rare} AP50 {rare_ap(ev0):.3f}")
            done_rounds = {k: v for k, v in done_rounds.items() if k[0] != seed}  # round 0 was redone: so is the rest
        flush()
        state = {s: {"labeled": labeled0.copy(), "ckpt": ckpt0, "scores": scores0 if _needs_model(s) else None}
                 for s in config.strategies}
        for rnd in range(1, config.rounds + 1):
            with round_lock():
                for strategy in config.strategies:
                    st = state[strategy]
                    kept, kept_selection = done_rounds.get((seed, strategy, rnd)), done_selections.get((seed, strategy, rnd))
                    ckpt = seed_dir / strategy / f"round{rnd}.pt"
                    if kept and kept_selection and (ckpt.is_file() or (seed, strategy, rnd + 1) in done_rounds):
                        st["labeled"][np.asarray(kept_selection["pool_rows"], np.int64)] = True
                        results["selections"].append(kept_selection)
                        results["rounds"].append(kept)
                        st["ckpt"] = ckpt
                        st["scores"] = _STALE if _needs_model(strategy) else None
                        continue
                    if st["scores"] is _STALE:
                        if not Path(st["ckpt"]).is_file():
                            raise InputError(f"cannot resume {strategy} at seed {seed} round {rnd}: its checkpoint "
                                             f"{st['ckpt']} is gone; start over with --fresh or use a new --out")
                        st["scores"] = timed("score_s", backend.score, st["ckpt"])
                    rows = select_rows(strategy, st["scores"], st["labeled"], config.budget, seed=seed * 1000 + rnd,
                                       meta=meta, classes=data.classes, uncertainty_name=config.uncertainty,
                                       params=config.strategy_params.get(strategy))
                    st["labeled"][rows] = True  # the oracle reveals their labels
                    results["selections"].append({"seed": seed, "strategy": strategy, "round": rnd,
                                                  "pool_rows": rows.tolist(), "image_ids": data.pool_ids[rows].tolist()})
                    sdir = seed_dir / strategy
                    train_json = write_coco_subset(data, data.pool_ids[st["labeled"]], sdir / f"round{rnd}.json")
                    # Same seed and iteration budget for every strategy in this round: only the data differs.
                    train_s = timed("finetune_s", backend.train, train_json, ckpt, init=st["ckpt"],
                                    iters=config.finetune_iters, seed=seed * 1000 + rnd)
                    ev = timed("eval_s", backend.evaluate, ckpt)
                    labeled_n = int(st["labeled"].sum())
                    record(seed, strategy, rnd, labeled_n, ev,
                           {"train_s": train_s, "new_rare_objects": _count_class(data, data.pool_ids[rows], rare)})
                    if _needs_model(strategy) and rnd < config.rounds:
                        st["scores"] = timed("score_s", backend.score, ckpt)
                    log(f"seed {seed} round {rnd} {strategy:<12} labeled {labeled_n:>5}  mAP@0.5 {ev['map50']:.3f}  "
                        f"mAP {ev['map']:.3f}  {rare} AP50 {rare_ap(ev):.3f}")
                    flush()
                    # Only now that the round is on record: a crash before this line resumes from the old one.
                    if st["ckpt"] != ckpt0:
                        Path(st["ckpt"]).unlink(missing_ok=True)  # keep disk use flat; the last one stays
                    st["ckpt"] = ckpt
    results["complete"] = True
    flush()
    return results


# A strategy's pool scores are out of date (a resumed run): score its checkpoint before selecting.
_STALE = object()


def _previous_results(path: Path, fresh: dict) -> dict:
    """The results of an interrupted run in the same work folder, if it ran the same configuration
    on the same data; otherwise ``InputError``."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot resume from {path}: {exc}; start over with --fresh or use a new --out") from exc
    as_json = lambda value: json.loads(json.dumps(value, default=_json_default))  # noqa: E731  (tuples -> lists)
    for key in ("config", "data"):
        if as_json(previous.get(key)) != as_json(fresh[key]):
            raise InputError(f"{path} holds a run with a different {key}; resume it with the same options, start over "
                             "with --fresh, or use a new --out")
    return previous


def _count_class(data: SimData, image_ids, class_name: str) -> int:
    cat_ids = {c["id"] for c in data.coco["categories"] if c["name"] == class_name}
    wanted = {int(i) for i in image_ids}
    return sum(1 for a in data.coco["annotations"] if a["image_id"] in wanted and a["category_id"] in cat_ids)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------- plotting
def plot_curves(results: dict, out_png: str | os.PathLike, *, metrics: Sequence[str] = ("map50", "map", "rare_ap50")) -> Path:
    """Learning curves (metric vs labeled frames), mean ± std band over seeds, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results.get("summary") or summarize(results["rounds"], results["config"]["strategies"])
    rare = results.get("data", {}).get("rare_class", "rare")
    titles = {"map50": "mAP@0.5", "map": "mAP@[.5:.95]", "rare_ap50": f"{rare} AP@0.5"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for strategy, per_metric in summary.get("strategies", {}).items():
            entry = per_metric.get(metric)
            if not entry:
                continue
            x, mean, std = (np.asarray(entry[k], float) for k in ("labeled", "mean", "std"))
            line, = ax.plot(x, mean, marker="o", ms=3, label=f"{strategy} (AUC {entry['auc_mean']:.3f})")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_title(titles.get(metric, metric))
        ax.set_xlabel("labeled frames")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    seeds = summary.get("seeds_used", [])
    fig.suptitle(f"{Path(str(results['data']['source'])).name}: mean ± std over {len(seeds)} seed(s)", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def summary_markdown(results: dict) -> str:
    """A Markdown table of the summary: AUC and label efficiency per strategy and metric."""
    summary = results.get("summary") or {}
    lines = [f"seeds used: {summary.get('seeds_used')}, rounds: {summary.get('rounds_used')}, "
             f"complete: {results.get('complete')}", ""]
    lines.append("| strategy | metric | final (mean ± std) | AUC (mean ± std) | labels to random's final | ratio (total) | ratio (added) |")
    lines.append("|---|---|---|---|---|---|---|")
    for strategy, per_metric in summary.get("strategies", {}).items():
        for metric, e in per_metric.items():
            reach = e.get("labels_to_reference_final")
            lines.append(
                f"| {strategy} | {metric} | {e['final_mean']:.3f} ± {e['std'][-1]:.3f} | {e['auc_mean']:.3f} ± "
                f"{e['auc_std']:.3f} | {'not reached' if reach is None else f'{reach:.0f}'} | "
                f"{'-' if e.get('label_ratio_vs_reference') is None else e['label_ratio_vs_reference']} | "
                f"{'-' if e.get('added_label_ratio_vs_reference') is None else e['added_label_ratio_vs_reference']} |")
    return "\n".join(lines)


def file_lock(path: str | os.PathLike) -> StepLock:
    """A ``step_lock`` factory: an exclusive ``flock`` on ``path`` per heavy step (other CPU-heavy
    jobs sharing the lock run between steps)."""
    import fcntl

    @contextlib.contextmanager
    def lock():
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        time.sleep(0.05)  # let a waiting job take the lock before our next step grabs it

    return lock


def selection_stats(results: dict, coco: dict) -> dict[str, dict]:
    """What each strategy picked, over all seeds and rounds: ground-truth objects per selected frame
    (annotation cost differs per frame), rare objects per frame, distinct belt sequences per selected
    frame (1.0 = no two picks from one sequence) and the share of picks per site."""
    rare = results["data"]["rare_class"]
    rare_ids = {c["id"] for c in coco["categories"] if c["name"] == rare}
    objects: dict[int, int] = {}
    rare_objects: dict[int, int] = {}
    for ann in coco["annotations"]:
        objects[ann["image_id"]] = objects.get(ann["image_id"], 0) + 1
        if ann["category_id"] in rare_ids:
            rare_objects[ann["image_id"]] = rare_objects.get(ann["image_id"], 0) + 1
    images = {img["id"]: img for img in coco["images"]}
    out: dict[str, dict] = {}
    for strategy in results["config"]["strategies"]:
        picks = [s for s in results["selections"] if s["strategy"] == strategy]
        ids = [i for s in picks for i in s["image_ids"]]
        if not ids:
            continue
        sequences = [len({group_key(images[i]) for i in s["image_ids"]}) / max(len(s["image_ids"]), 1) for s in picks]
        sites: dict[str, int] = {}
        for i in ids:
            site = str(images[i].get("site", "?"))
            sites[site] = sites.get(site, 0) + 1
        out[strategy] = {
            "frames": len(ids),
            "objects_per_frame": round(float(np.mean([objects.get(i, 0) for i in ids])), 3),
            "rare_objects_per_frame": round(float(np.mean([rare_objects.get(i, 0) for i in ids])), 4),
            "distinct_sequences_per_frame": round(float(np.mean(sequences)), 3),
            "site_share": {k: round(v / len(ids), 3) for k, v in sorted(sites.items())},
        }
    return out
