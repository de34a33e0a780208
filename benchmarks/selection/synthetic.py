"""Synthetic selection pools: clustered unit embeddings with planted near-duplicate groups.

Used by the selection benchmark and by the selection tests (small sizes). Layout:

- ``n_clusters`` unit centers; a frame is ``center + N(0, sigma^2)`` normalized (same-cluster
  frames sit ~0.4 apart in cosine distance, other clusters ~1.0);
- frames stream from ``n_cameras`` cameras at ``frame_interval_s``;
- planted near-duplicate groups (cosine distance < 0.01 inside a group, far under the default
  0.05 threshold): *temporal* groups are consecutive frames of one camera (a slow belt), *global*
  groups are scattered over cameras and time (the same item seen again later);
- uncertainty: cluster difficulty + item noise; members of a group share their item's value
  (plus tiny noise), so an uncertain item repeated many times crowds a plain top-k;
- predicted classes: one dominant class per cluster; ``battery`` is rare (mostly in a few clusters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("cardboard", "paper", "pet_bottle", "hdpe_container", "aluminum_can", "film", "glass", "battery")


@dataclass
class SyntheticPool:
    embeddings: np.ndarray  # (N, D) float32 unit rows
    labeled_embeddings: np.ndarray  # (L, D)
    uncertainty: np.ndarray  # (N,) float32
    predicted_classes: np.ndarray  # (N, C) int32
    class_names: list[str]
    camera: np.ndarray  # (N,) int64
    captured_at_s: np.ndarray  # (N,) float64
    eligible: np.ndarray  # (N,) bool
    group: np.ndarray  # (N,) int64 planted group id, -1 = no group
    group_temporal: np.ndarray  # (n_groups,) bool: group is temporal (consecutive frames of one camera)

    def pool(self):
        from active_learning.selection import Pool

        return Pool(uncertainty=self.uncertainty, embeddings=self.embeddings,
                    labeled_embeddings=self.labeled_embeddings, predicted_classes=self.predicted_classes,
                    class_names=list(self.class_names), camera=self.camera, captured_at_s=self.captured_at_s,
                    eligible=self.eligible, uncertainty_name="entropy_sum")


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_pool(
    n: int,
    dim: int = 128,
    *,
    seed: int = 0,
    n_clusters: int | None = None,
    dup_fraction: float = 0.10,
    temporal_share: float = 0.8,
    n_cameras: int = 16,
    n_labeled: int | None = None,
    ineligible_fraction: float = 0.01,
    sigma: float = 0.07,
    frame_interval_s: float = 0.5,
) -> SyntheticPool:
    """A deterministic synthetic pool of ``n`` frames (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_clusters = n_clusters or max(8, n // 1000)
    n_labeled = max(10, n // 500) if n_labeled is None else n_labeled
    centers = _unit(rng.standard_normal((n_clusters, dim)).astype(np.float32))
    difficulty = rng.beta(2, 5, n_clusters).astype(np.float32)
    n_classes = len(CLASS_NAMES)
    dominant = rng.integers(0, n_classes - 1, n_clusters)  # battery is never a cluster's main class
    battery_cluster = rng.random(n_clusters) < 0.03

    # Plan frames: a list of items, each repeated 1 (single) or 2-5 times (a planted group).
    group = np.full(n, -1, dtype=np.int64)
    item_of = np.empty(n, dtype=np.int64)
    n_dup_frames = int(n * dup_fraction)
    sizes = []
    while sum(sizes) < n_dup_frames:
        sizes.append(int(rng.integers(2, 6)))
    temporal = rng.random(len(sizes)) < temporal_share
    # Stream order per camera: temporal groups are contiguous; singles and global members fill in.
    slots: list[list[int]] = []  # each slot: frames that must be consecutive
    next_frame = 0
    for g, size in enumerate(sizes):
        if next_frame + size > n:
            break
        members = list(range(next_frame, next_frame + size))
        group[members] = g
        item_of[members] = g
        if temporal[g]:
            slots.append(members)
        else:
            slots.extend([[m] for m in members])
        next_frame += size
    n_groups = int(group.max()) + 1 if (group >= 0).any() else 0
    item_of[next_frame:] = n_groups + np.arange(n - next_frame)
    slots.extend([[m] for m in range(next_frame, n)])
    order = rng.permutation(len(slots))
    camera = np.empty(n, dtype=np.int64)
    captured = np.empty(n, dtype=np.float64)
    clock = np.zeros(n_cameras)
    for s in order:
        cam = int(rng.integers(n_cameras))
        for frame in slots[s]:
            camera[frame] = cam
            captured[frame] = clock[cam]
            clock[cam] += frame_interval_s

    # Items: cluster, base vector, uncertainty, classes.
    n_items = int(item_of.max()) + 1
    item_cluster = rng.integers(0, n_clusters, n_items)
    item_base = centers[item_cluster] + sigma * rng.standard_normal((n_items, dim)).astype(np.float32)
    _unit(item_base)
    item_u = (0.5 * difficulty[item_cluster] + 0.5 * rng.random(n_items)).astype(np.float32)
    counts = np.zeros((n_items, n_classes), dtype=np.int32)
    counts[np.arange(n_items), dominant[item_cluster]] = rng.poisson(1.5, n_items) + 1
    extra = rng.integers(0, n_classes - 1, n_items)
    np.add.at(counts, (np.arange(n_items), extra), rng.poisson(0.3, n_items))
    battery_p = np.where(battery_cluster[item_cluster], 0.5, 0.002)
    counts[:, -1] = (rng.random(n_items) < battery_p).astype(np.int32)

    # Frames: a group member is its item's base plus a tiny nudge (cosine distance < 0.01).
    embeddings = item_base[item_of]
    in_group = group >= 0
    nudge = rng.uniform(0.004, 0.009, int(in_group.sum())).astype(np.float32)[:, None]
    embeddings[in_group] += nudge * rng.standard_normal((int(in_group.sum()), dim)).astype(np.float32)
    _unit(embeddings)
    uncertainty = item_u[item_of].copy()
    uncertainty[in_group] += rng.normal(0, 0.003, int(in_group.sum())).astype(np.float32)
    labeled_cluster = rng.integers(0, n_clusters, n_labeled)
    labeled = _unit(centers[labeled_cluster] + sigma * rng.standard_normal((n_labeled, dim)).astype(np.float32))
    eligible = rng.random(n) >= ineligible_fraction
    return SyntheticPool(
        embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
        labeled_embeddings=np.ascontiguousarray(labeled, dtype=np.float32),
        uncertainty=uncertainty.astype(np.float32),
        predicted_classes=counts[item_of],
        class_names=list(CLASS_NAMES),
        camera=camera,
        captured_at_s=captured,
        eligible=eligible,
        group=group,
        group_temporal=temporal[:n_groups].copy(),
    )
