"""Selection glue: build the eligible pool from the catalog, run a strategy, record the result.

``select_from_catalog`` is the one function the ``select`` command and ``refresh`` call:

1. pool = every frame with a prediction of the model version (default: the newest one with
   predictions) and a vector in its store; frames without a vector are counted, not selected;
2. exclusions from the catalog: frames with a current accepted annotation (*labeled*: their
   vectors become the diversity seeds) and frames already pushed to Label Studio (a LabelTask that
   is not deleted). Quarantined files never became frames;
3. embeddings: the store's vectors, PCA-reduced to ``score.pca_dim`` (fitted on a seeded sample
   of pool + labeled vectors, projected chunk by chunk) and L2-normalized;
4. the strategy (a pure function of arrays, ``active_learning.selection``);
5. unless ``dry_run``: one ``Selection`` row, its ``SelectionItem`` rows (rank 1 = label first)
   and ``state_dir/selections/<name>.csv`` + ``.json`` (the JSON also lists the near-duplicates
   each frame stands for).

Index spaces: *pool rows* are positions in the arrays built here (ordered by frame id); *store
rows* are positions in the vector store; both become catalog *frame ids* in this module only.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from curation.catalog import Annotation, Catalog, Frame, LabelTask, ModelVersion, Prediction, Selection, SelectionItem, utcnow
from curation.errors import InputError

# Rows sampled to fit the PCA used by selection (a fit on more rows changes distances < 1e-3).
PCA_FIT_ROWS = 65_536
# Store rows converted per step when building the pool's embeddings (bounds float32 temporaries).
EMBED_CHUNK = 65_536
# Items shown in the summary (text and --json); the CSV/JSON files hold all of them.
SUMMARY_ITEMS = 10
# setting name (select.<key>) -> strategy parameter name
SETTING_PARAMS = {
    "prefilter_factor": "prefilter_factor",
    "explore_fraction": "explore_fraction",
    "rare_quota": "rare_quota",
    "rare_classes": "rare_classes",
    "dedupe_threshold": "dedupe_threshold",
    "temporal_window_s": "temporal_window_s",
    "min_distance_to_labeled": "min_distance_to_labeled",
    "diversity": "diversity",
    "dedupe_method": "dedupe_method",
    "clusters": "n_clusters",
}


@dataclass
class SelectionSummary:
    """What a selection did; ``as_dict()`` is the ``--json`` output."""

    strategy: str
    budget: int
    seed: int
    model_version: str
    selected: int
    eligible: int
    pool: int
    dry_run: bool
    selection_id: int | None = None
    name: str | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    labeled_seeds: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    near_duplicates_collapsed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)  # the first SUMMARY_ITEMS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CatalogPool:
    """The pool plus what maps it back to the catalog (kept out of the pure ``Pool``)."""

    pool: Any  # active_learning.selection.Pool
    frame_ids: np.ndarray  # (N,) int64 catalog frame id of each pool row
    paths: list[str]
    cameras: list[str]  # "site/line/camera" of each pool row
    captured_at: list[dt.datetime | None]
    model_version: ModelVersion
    excluded: dict[str, int]
    seconds: dict[str, float]


def resolve_model_version(session, name: str | None) -> ModelVersion:
    """The named model version, or the newest one with predictions; clear errors otherwise."""
    if name is not None:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        if row is None:
            known = sorted(session.scalars(select(ModelVersion.name)).all())
            raise InputError(f"model version {name!r} is not in the catalog; known: {', '.join(known) or 'none'}")
        return row
    row = session.scalar(
        select(ModelVersion).join(Prediction, Prediction.model_version_id == ModelVersion.id)
        .group_by(ModelVersion.id).order_by(ModelVersion.id.desc()).limit(1)
    )
    if row is None:
        raise InputError("the catalog has no predictions yet; run 'beltcurate score' before 'beltcurate select'")
    return row


def build_pool(catalog: Catalog, settings, *, model_version: str | None = None, seed: int = 0) -> CatalogPool:
    """Read predictions, exclusions and vectors into a ``Pool`` (see the module docstring)."""
    from active_learning.embeddings import VectorStore
    from active_learning.selection import Pool

    started = time.perf_counter()
    with catalog.session() as session:
        version = resolve_model_version(session, model_version)
        rows = session.execute(
            select(Prediction.frame_id, Prediction.uncertainty, Prediction.boxes, Frame.path, Frame.site, Frame.line,
                   Frame.camera, Frame.captured_at)
            .join(Frame, Frame.id == Prediction.frame_id)
            .where(Prediction.model_version_id == version.id)
            .order_by(Prediction.frame_id)
        ).all()
        labeled_ids = np.array(sorted(set(session.scalars(
            select(Annotation.frame_id).where(Annotation.is_current.is_(True), Annotation.status == "accepted")
        ).all())), dtype=np.int64)
        pushed_ids = np.array(sorted(set(session.scalars(
            select(LabelTask.frame_id).where(LabelTask.status != "deleted")
        ).all())), dtype=np.int64)
    loaded = time.perf_counter()

    frame_ids = np.array([r.frame_id for r in rows], dtype=np.int64)
    store = VectorStore(settings.state_dir / "vectors", version.name)
    store_rows = store.rows_for(frame_ids)
    has_vector = store_rows >= 0
    if len(frame_ids) and not has_vector.any():
        raise InputError(
            f"no embeddings stored for model version {version.name!r} under {store.path}; "
            "rescore with 'beltcurate score' (it writes them) or check state_dir"
        )
    rows = [r for r, ok in zip(rows, has_vector) if ok]
    frame_ids, store_rows = frame_ids[has_vector], store_rows[has_vector]
    labeled = np.isin(frame_ids, labeled_ids)
    pushed = np.isin(frame_ids, pushed_ids) & ~labeled
    eligible = ~labeled & ~pushed

    # Labeled frames seed diversity with their vectors, whether or not they are in the pool.
    labeled_store_rows = store.rows_for(labeled_ids)
    labeled_store_rows = labeled_store_rows[labeled_store_rows >= 0]
    embeddings, labeled_embeddings = embed(store, store_rows, labeled_store_rows, int(settings["score.pca_dim"]), seed)

    class_names = list(version.classes or [])
    counts = predicted_class_counts([r.boxes for r in rows], class_names, float(settings["select.class_min_score"]))
    cameras = [f"{r.site}/{r.line}/{r.camera}" for r in rows]
    captured = [r.captured_at for r in rows]
    captured_s = np.array([np.nan if t is None else _epoch_seconds(t) for t in captured], dtype=np.float64)
    pool = Pool(
        uncertainty=np.array([r.uncertainty for r in rows], dtype=np.float32),
        embeddings=embeddings,
        labeled_embeddings=labeled_embeddings,
        predicted_classes=counts,
        class_names=class_names,
        camera=np.unique(np.array(cameras, dtype=str), return_inverse=True)[1].reshape(-1) if rows else np.zeros(0, np.int64),
        captured_at_s=captured_s,
        eligible=eligible,
        uncertainty_name=str(settings["score.uncertainty"]),
    )
    excluded = {
        "labeled": int(labeled.sum()),
        "pushed": int(pushed.sum()),
        "no_embedding": int((~has_vector).sum()),
    }
    seconds = {"load": round(loaded - started, 3), "embeddings": round(time.perf_counter() - loaded, 3)}
    return CatalogPool(pool, frame_ids, [r.path for r in rows], cameras, captured, version, excluded, seconds)


def embed(store, store_rows: np.ndarray, labeled_store_rows: np.ndarray, pca_dim: int, seed: int):
    """``(pool (N, d), labeled (L, d))`` float32 unit rows from the store (float16 on disk).

    With ``0 < pca_dim < D`` both are projected on principal components fitted on a seeded sample
    of at most ``PCA_FIT_ROWS`` of their rows, so labeled and pool vectors share one space.
    """
    from active_learning.embeddings import l2_normalize

    raw = store.raw()
    dim = raw.shape[1] if raw.ndim == 2 else 0
    project = None
    if 0 < pca_dim < dim and len(store_rows) + len(labeled_store_rows):
        from sklearn.decomposition import PCA

        both = np.concatenate([store_rows, labeled_store_rows])
        rng = np.random.default_rng(seed)
        fit_rows = np.sort(rng.choice(both, size=min(len(both), PCA_FIT_ROWS), replace=False))
        sample = l2_normalize(np.asarray(raw[fit_rows], dtype=np.float32))
        n_components = min(pca_dim, len(sample))
        pca = PCA(n_components=n_components, svd_solver="full" if n_components >= min(sample.shape) else "randomized",
                  random_state=seed).fit(sample)
        project = pca
        dim = pca_dim

    def convert(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), dim), dtype=np.float32)
        for start in range(0, len(rows), EMBED_CHUNK):
            part = l2_normalize(np.asarray(raw[rows[start:start + EMBED_CHUNK]], dtype=np.float32))
            if project is not None:
                part_out = project.transform(part).astype(np.float32)
                out[start:start + len(part), :part_out.shape[1]] = part_out
            else:
                out[start:start + len(part)] = part
        return l2_normalize(out)

    return convert(np.asarray(store_rows)), convert(np.asarray(labeled_store_rows))


def predicted_class_counts(boxes_per_frame, class_names: list[str], min_score: float) -> np.ndarray:
    """``(N, C)`` int32 boxes per class with ``score >= min_score``; labels missing from
    ``class_names`` are appended to it (so a renamed class still counts)."""
    lookup = {name: i for i, name in enumerate(class_names)}
    hits: list[tuple[int, int]] = []
    for row, boxes in enumerate(boxes_per_frame):
        for box in boxes or ():
            score = box.get("score")
            if score is not None and float(score) < min_score:
                continue
            label = str(box.get("label"))
            if label not in lookup:
                lookup[label] = len(class_names)
                class_names.append(label)
            hits.append((row, lookup[label]))
    counts = np.zeros((len(boxes_per_frame), len(class_names)), dtype=np.int32)
    if hits:
        at = np.array(hits, dtype=np.int64)
        np.add.at(counts, (at[:, 0], at[:, 1]), 1)
    return counts


def strategy_params_from_settings(settings, strategy: str) -> dict[str, Any]:
    """The ``select.*`` settings the strategy accepts, as its keyword arguments."""
    from active_learning.selection import strategy_params

    accepted = set(strategy_params(strategy))
    params = {param: settings[f"select.{key}"] for key, param in SETTING_PARAMS.items() if param in accepted}
    if "rare_classes" in params:
        params["rare_classes"] = tuple(params["rare_classes"])
    return params


def select_from_catalog(
    catalog: Catalog,
    settings,
    *,
    budget: int | None = None,
    strategy: str | None = None,
    model_version: str | None = None,
    dry_run: bool = False,
    seed: int | None = None,
) -> SelectionSummary:
    """Select ``budget`` frames with ``strategy`` and record them (unless ``dry_run``).

    Defaults come from the ``select.*`` settings. Deterministic: the same catalog, settings and
    seed give the same ranked frames.
    """
    from active_learning.selection import STRATEGIES

    started = time.perf_counter()
    budget = int(settings["select.budget"] if budget is None else budget)
    strategy = str(settings["select.strategy"] if strategy is None else strategy)
    seed = int(settings["select.seed"] if seed is None else seed)
    if budget < 0:
        raise InputError(f"--budget must be >= 0, got {budget}")
    run = STRATEGIES.get(strategy)  # unknown names fail before any loading
    params = strategy_params_from_settings(settings, strategy)
    built = build_pool(catalog, settings, model_version=model_version, seed=seed)
    strategy_started = time.perf_counter()
    result = run(built.pool, budget, seed=seed, **params)
    strategy_seconds = time.perf_counter() - strategy_started

    items = [_item(built, result, i) for i in range(len(result))]
    excluded = dict(built.excluded)
    if "excluded_near_labeled" in result.stats:
        excluded["near_labeled"] = int(result.stats["excluded_near_labeled"])
    summary = SelectionSummary(
        strategy=strategy, budget=budget, seed=seed, model_version=built.model_version.name,
        selected=len(result), eligible=int(built.pool.eligible.sum()) - excluded.get("near_labeled", 0),
        pool=len(built.pool), dry_run=dry_run, excluded=excluded, labeled_seeds=built.pool.n_labeled,
        stages=_stage_counts(result), near_duplicates_collapsed=int(result.stats.get("near_duplicates_collapsed", 0)),
        params=_jsonable(params),
        seconds={**built.seconds, "strategy": round(strategy_seconds, 3)},
        items=items[:SUMMARY_ITEMS],
    )
    if not dry_run:
        write_started = time.perf_counter()
        _record(catalog, settings, built, result, summary, items)
        summary.seconds["write"] = round(time.perf_counter() - write_started, 3)
    summary.seconds["total"] = round(time.perf_counter() - started, 3)
    return summary


def _item(built: CatalogPool, result, i: int) -> dict[str, Any]:
    row = int(result.pool_rows[i])
    when = built.captured_at[row]
    return {
        "rank": i + 1,
        "frame_id": int(built.frame_ids[row]),
        "path": built.paths[row],
        "camera": built.cameras[row],
        "captured_at": when.isoformat() if when is not None else None,
        "uncertainty": _num(result.uncertainty[i]),
        "score": _num(result.score[i]),
        "distance_to_labeled": _num(result.distance_to_labeled[i]),
        "cluster": None if result.cluster[i] < 0 else int(result.cluster[i]),
        "stage": result.stage[i],
        "near_duplicates": [int(f) for f in built.frame_ids[result.duplicates[i]]],
        "reason": result.reasons[i],
    }


def _num(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _stage_counts(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    for stage in result.stage:
        counts[stage] = counts.get(stage, 0) + 1
    return counts


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


def _epoch_seconds(when: dt.datetime) -> float:
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (when - dt.datetime(1970, 1, 1)).total_seconds()


def _unique_name(session, strategy: str, budget: int, seed: int) -> str:
    base = f"{utcnow():%Y%m%dT%H%M%S}-{strategy}-b{budget}-s{seed}"
    taken = set(session.scalars(select(Selection.name).where(Selection.name.like(base + "%"))).all())
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _record(catalog: Catalog, settings, built: CatalogPool, result, summary: SelectionSummary,
            items: list[dict[str, Any]]) -> None:
    """Selection + items in one transaction, then the CSV/JSON files (written atomically)."""
    with catalog.session() as session:
        name = _unique_name(session, summary.strategy, summary.budget, summary.seed)
        selection = Selection(
            name=name, strategy=summary.strategy, budget=summary.budget, seed=summary.seed,
            model_version_id=built.model_version.id,
            params={"strategy_params": summary.params, "excluded": summary.excluded, "stages": summary.stages,
                    "eligible": summary.eligible, "pool": summary.pool, "labeled_seeds": summary.labeled_seeds,
                    "near_duplicates_collapsed": summary.near_duplicates_collapsed},
        )
        session.add(selection)
        session.flush()
        if items:
            session.execute(insert(SelectionItem), [
                {"selection_id": selection.id, "frame_id": item["frame_id"], "rank": item["rank"],
                 "score": item["score"], "uncertainty": item["uncertainty"],
                 "distance_to_labeled": item["distance_to_labeled"], "cluster": item["cluster"],
                 "reason": item["reason"]}
                for item in items
            ])
        summary.selection_id = selection.id
        summary.name = name
    out_dir = settings.state_dir / "selections"
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / f"{summary.name}.csv", out_dir / f"{summary.name}.json"
    columns = ["rank", "frame_id", "path", "camera", "captured_at", "stage", "uncertainty", "score",
               "distance_to_labeled", "cluster", "near_duplicates", "reason"]

    def write_csv(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for item in items:
            writer.writerow({**item, "near_duplicates": len(item["near_duplicates"])})

    _atomic_write(csv_path, write_csv, newline="")
    summary.files = {"csv": str(csv_path), "json": str(json_path)}
    document = {**summary.as_dict(), "items": items}
    _atomic_write(json_path, lambda handle: json.dump(document, handle, indent=1, default=str))


def _atomic_write(path: Path, write, **open_kwargs) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", **open_kwargs) as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)

