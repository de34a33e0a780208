"""Scoring engine: detections -> catalog rows, DataLoader batching/workers, Ray Data == local."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from active_learning.detectors import Detections, load_detector
from active_learning.detectors.torchvision_adapter import build_model, checkpoint_dict
from active_learning.engine import (
    FrameResult,
    ScoringConfig,
    columns_to_results,
    iter_local,
    iter_ray,
    results_from_detections,
    results_to_columns,
)
from curation.errors import ConfigError, UnknownNameError
from curation.synth import CLASSES


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("fcos_mnv3s", CLASSES, (256, 192))
    path = tmp_path_factory.mktemp("ckpt") / "random_fcos.pt"
    torch.save(checkpoint_dict(model, arch="fcos_mnv3s", classes=CLASSES, input_size=(256, 192),
                               model_version="random-fcos"), path)
    return path


@pytest.fixture(scope="module")
def frames(synth_small):
    paths = sorted((synth_small / "images").rglob("*.jpg"))[:10]
    return [(100 + i, str(p)) for i, p in enumerate(paths)]


def by_frame(batches) -> dict[int, FrameResult]:
    return {r.frame_id: r for batch in batches for r in batch}


def assert_same_results(a: dict[int, FrameResult], b: dict[int, FrameResult]):
    """Equal up to float rounding: same frames, labels and box count; values within 1e-3."""
    assert sorted(a) == sorted(b)
    for frame_id in a:
        ra, rb = a[frame_id], b[frame_id]
        assert [box["label"] for box in ra.boxes] == [box["label"] for box in rb.boxes]
        for box_a, box_b in zip(ra.boxes, rb.boxes):
            np.testing.assert_allclose(box_a["xywh_px"], box_b["xywh_px"], atol=1e-2)
            np.testing.assert_allclose(box_a["probs"], box_b["probs"], atol=1e-3)
        assert ra.scores.keys() == rb.scores.keys()
        for name in ra.scores:
            assert ra.scores[name] == pytest.approx(rb.scores[name], rel=1e-4, abs=1e-4), name
        np.testing.assert_allclose(ra.embedding, rb.embedding, rtol=1e-4, atol=1e-5)


def test_results_use_catalog_conventions():
    det = Detections([[10, 20, 50, 60], [0, 0, 5, 5], [1, 1, 9, 9]], [7, 0, 2], [0.9, 0.05, 0.3],
                     np.full((3, len(CLASSES) + 1), 1 / (len(CLASSES) + 1)), np.ones(4), "softmax")
    config = ScoringConfig(store_min_score=0.1)
    [result] = results_from_detections([42], [det], CLASSES, config)
    assert result.frame_id == 42
    assert [b["label"] for b in result.boxes] == ["battery", "pet_bottle"]  # score-descending, 0.05 not stored
    assert result.boxes[0]["xywh_px"] == [10.0, 20.0, 40.0, 40.0]
    assert len(result.boxes[0]["probs"]) == len(CLASSES)  # per class in class-map order, background implied
    assert result.uncertainty == result.scores["entropy_sum"]
    assert result.scores["entropy_sum"] > 0
    assert result.embedding.shape == (4,)


def test_columns_round_trip_for_ray():
    results = [FrameResult(1, [{"xywh_px": [1, 2, 3, 4], "label": "paper", "score": 0.5}], {"entropy_sum": 0.3}, 0.3,
                           np.arange(3, dtype=np.float32)),
               FrameResult(2, [], {}, 0.0, None, "cannot decode")]
    back = columns_to_results(results_to_columns(results))
    assert back[0].boxes == results[0].boxes and back[0].scores == results[0].scores
    np.testing.assert_array_equal(back[0].embedding, results[0].embedding)
    assert back[1].embedding is None and back[1].error == "cannot decode"


def test_config_validation_names_the_setting():
    with pytest.raises(UnknownNameError, match="entropy_sum"):
        ScoringConfig(ranking="entropy").validate()
    with pytest.raises(ConfigError, match="tta_flip"):
        ScoringConfig(ranking="flip_instability").validate()


def test_batching_and_decode_workers_do_not_change_results(random_checkpoint, frames):
    detector = load_detector(random_checkpoint)
    one_shot = by_frame(iter_local(detector, frames, ScoringConfig(batch_size=10, workers=0, store_min_score=0.0)))
    chunked = by_frame(iter_local(detector, frames, ScoringConfig(batch_size=3, workers=1, store_min_score=0.0)))
    assert len(one_shot) == len(frames)
    assert all(r.boxes for r in one_shot.values())
    assert_same_results(one_shot, chunked)


def test_flip_tta_adds_instability_score(random_checkpoint, frames):
    detector = load_detector(random_checkpoint)
    results = by_frame(iter_local(detector, frames[:2], ScoringConfig(batch_size=2, workers=0, tta_flip=True)))
    for result in results.values():
        assert 0.0 <= result.scores["flip_instability"] <= 1.0


def test_undecodable_frames_are_reported_not_scored(random_checkpoint, frames, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    detector = load_detector(random_checkpoint)
    results = by_frame(iter_local(detector, [frames[0], (999, str(broken))], ScoringConfig(batch_size=2, workers=0)))
    assert results[999].error and "broken.jpg" in results[999].error and results[999].boxes == []
    assert results[frames[0][0]].error is None


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_ray_data_actor_pool_gives_the_same_results_as_local(random_checkpoint, frames):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        # Random weights score every box under 0.1: store them all so the comparison covers boxes.
        config = ScoringConfig(batch_size=2, workers=0, store_min_score=0.0)
        subset = frames[:6]
        remote = by_frame(iter_ray(random_checkpoint, subset, config, actors=2))
    finally:
        ray.shutdown()
    local = by_frame(iter_local(load_detector(random_checkpoint), subset, config))
    assert len(remote) == len(subset) and all(r.boxes for r in remote.values())
    assert_same_results(local, remote)
