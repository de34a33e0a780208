"""Detector adapters: every supported architecture loads and runs (random weights, tiny inputs),
per-box probabilities are recovered faithfully, checkpoints round-trip, bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.ssd import SSD

from active_learning.detectors import Detector, Detections, load_detector
from active_learning.detectors.torchvision_adapter import (
    ARCHS,
    TorchvisionDetector,
    build_model,
    checkpoint_dict,
)
from curation.errors import InputError, UnknownNameError

CLASSES = ["can", "bottle", "battery"]
INPUT_SIZE = (96, 64)  # tiny: the point is plumbing, not accuracy


def images(n=2, seed=0, height=60, width=80):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def make_detector(arch: str, seed: int = 0) -> TorchvisionDetector:
    torch.manual_seed(seed)
    model = build_model(arch, CLASSES, INPUT_SIZE)
    if ARCHS.get(arch).family in ("retinanet", "fcos"):
        # Random sigmoid heads start at prior 0.01, under the 0.05 threshold: keep every candidate.
        model.score_thresh = 0.0
    return TorchvisionDetector(model, arch=arch, classes=CLASSES, input_size=INPUT_SIZE, model_version=f"{arch}-test")


def stock_outputs(detector: TorchvisionDetector, imgs):
    """The same model with torchvision's own postprocess (our subclass swapped back out)."""
    from active_learning.detectors.torchvision_adapter import images_to_tensors

    model = detector.model
    family = detector.family
    swapped = model.roi_heads if family == "fasterrcnn" else model
    ours = swapped.__class__
    swapped.__class__ = {"fasterrcnn": RoIHeads, "retinanet": RetinaNet, "fcos": FCOS, "ssd": SSD}[family]
    try:
        with torch.inference_mode():
            return model(images_to_tensors(imgs))
    finally:
        swapped.__class__ = ours


@pytest.mark.parametrize("arch", ARCHS.names())
def test_every_architecture_runs_and_recovers_per_box_probabilities(arch):
    detector = make_detector(arch)
    assert isinstance(detector, Detector)
    imgs = images()
    detections = detector.predict(imgs)
    assert len(detections) == 2
    reference = stock_outputs(detector, imgs)
    softmax = ARCHS.get(arch).family in ("fasterrcnn", "ssd")
    offset = 1 if softmax else 0
    for det, ref in zip(detections, reference):
        assert isinstance(det, Detections)
        n = len(det)
        assert n > 0, "random weights at threshold 0 should still give boxes"
        # Boxes, labels and scores are exactly torchvision's.
        np.testing.assert_allclose(det.boxes_xyxy_px, ref["boxes"].numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(det.scores, ref["scores"].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(det.labels, ref["labels"].numpy() - offset)
        assert det.labels.min() >= 0 and det.labels.max() < len(CLASSES)
        # The recovered class vector agrees with the box's own label and score.
        assert det.probs_kind == ("softmax" if softmax else "sigmoid")
        assert det.probs.shape == (n, len(CLASSES) + (1 if softmax else 0))
        np.testing.assert_allclose(det.probs[np.arange(n), det.labels], det.scores, rtol=1e-5, atol=1e-6)
        if softmax:
            np.testing.assert_allclose(det.probs.sum(axis=1), 1.0, atol=1e-5)
            # The box's label is its best foreground class only when NMS kept the top class.
            assert np.all(det.probs[:, :-1].max(axis=1) >= det.scores - 1e-6)
        else:
            assert np.all((det.probs >= 0) & (det.probs <= 1))
        assert det.embedding is not None and det.embedding.ndim == 1 and np.isfinite(det.embedding).all()
        assert det.boxes_xyxy_px[:, 2].max() <= imgs[0].shape[1] + 1e-3
        assert det.boxes_xyxy_px[:, 3].max() <= imgs[0].shape[0] + 1e-3


def test_embedding_of_a_frame_does_not_depend_on_its_batch():
    detector = make_detector("fcos_mnv3s")
    a, b, c = images(3, seed=4)
    alone = detector.predict([a])[0]
    batched = detector.predict([b, a, c])[1]
    np.testing.assert_allclose(alone.embedding, batched.embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone.scores, batched.scores, rtol=1e-4, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    detector = make_detector("fasterrcnn_mnv3s_fpn", seed=3)
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint_dict(detector.model, arch="fasterrcnn_mnv3s_fpn", classes=CLASSES, input_size=INPUT_SIZE,
                               model_version="frcnn-rt", train={"note": "test"}), path)
    loaded = load_detector(path)
    assert (loaded.model_version, loaded.classes, loaded.arch) == ("frcnn-rt", CLASSES, "fasterrcnn_mnv3s_fpn")
    assert loaded.meta["train"] == {"note": "test"}
    imgs = images(seed=5)
    for a, b in zip(detector.predict(imgs), loaded.predict(imgs)):
        np.testing.assert_array_equal(a.boxes_xyxy_px, b.boxes_xyxy_px)
        np.testing.assert_array_equal(a.probs, b.probs)
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_bad_checkpoints_fail_with_the_file_name_and_the_fix(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_detector(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_detector(junk)
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict": {}, "arch": "fcos_mnv3s"}, partial)
    with pytest.raises(InputError, match="classes, model_version"):
        load_detector(partial)
    unknown = tmp_path / "unknown.pt"
    torch.save({"state_dict": {}, "arch": "yolo_v99", "classes": CLASSES, "model_version": "x"}, unknown)
    with pytest.raises(InputError, match="supported: .*fcos_mnv3s"):
        load_detector(unknown)
    wrong_classes = tmp_path / "wrong.pt"
    model = build_model("fcos_mnv3s", CLASSES, INPUT_SIZE)
    torch.save(checkpoint_dict(model, arch="fcos_mnv3s", classes=CLASSES[:2], input_size=INPUT_SIZE,
                               model_version="x"), wrong_classes)
    with pytest.raises(InputError, match="do not fit arch 'fcos_mnv3s' with 2 classes"):
        load_detector(wrong_classes)
    adapter = tmp_path / "adapter.pt"
    torch.save({"state_dict": {}, "arch": "a", "classes": CLASSES, "model_version": "x", "adapter": "onnx"}, adapter)
    with pytest.raises(UnknownNameError, match="valid: torchvision"):
        load_detector(adapter)


def test_predict_rejects_non_rgb_uint8_input():
    detector = make_detector("fcos_mnv3s")
    with pytest.raises(InputError, match="HxWx3 uint8"):
        detector.predict([np.zeros((10, 10), dtype=np.uint8)])
    assert detector.predict([]) == []
