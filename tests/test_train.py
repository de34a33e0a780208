"""Reference trainer and COCO evaluation: checkpoints load, warm starts work, mAP is computed right,
and the committed demo detector really reaches its documented accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from active_learning.detectors import Detections, load_detector
from active_learning.train import evaluate, load_coco, read_rgb, train_detector
from curation.errors import InputError
from curation.synth import CLASSES

REPO = Path(__file__).resolve().parent.parent
DEMO_CHECKPOINT = REPO / "models" / "demo_fcos_mnv3s.pt"


class GroundTruthDetector:
    """Returns the ground-truth boxes of each image (looked up by pixel content) with score 1."""

    arch, model_version = "oracle", "oracle"

    def __init__(self, dataset, drop_class: str | None = None):
        self.classes = list(CLASSES)
        self._by_image = {}
        for entry in dataset.images:
            key = read_rgb(dataset.image_root / entry["file_name"]).tobytes()
            keep = np.array([self.classes[l] != drop_class for l in dataset.labels[entry["id"]]], dtype=bool)
            self._by_image[key] = (dataset.boxes_xyxy_px[entry["id"]][keep], dataset.labels[entry["id"]][keep])

    def predict(self, images):
        out = []
        for image in images:
            boxes, labels = self._by_image[image.tobytes()]
            out.append(Detections(boxes, labels, np.ones(len(labels)), None, None, None))
        return out


def test_evaluate_gives_perfect_scores_for_ground_truth_and_per_class_ap(synth_small):
    coco, images = synth_small / "annotations.json", synth_small / "images"
    dataset = load_coco(coco, images)
    perfect = evaluate(GroundTruthDetector(dataset), coco, images)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map"] == pytest.approx(1.0)
    assert perfect["n_images"] == 120
    present = {name for name, count in dataset.class_counts().items() if count}
    assert {name for name, ap in perfect["per_class_ap50"].items() if ap > 0.99} == present
    without_cardboard = evaluate(GroundTruthDetector(dataset, drop_class="cardboard"), coco, images)
    assert without_cardboard["per_class_ap50"]["cardboard"] == pytest.approx(0.0)
    assert without_cardboard["map50"] < perfect["map50"]


def test_short_training_run_writes_a_loadable_checkpoint_and_warm_starts(synth_small, tmp_path):
    coco, images = synth_small / "annotations.json", synth_small / "images"
    out = tmp_path / "tiny.pt"
    summary = train_detector(coco, images, out, arch="fcos_mnv3s", max_iters=6, batch_size=4, seed=3,
                             input_size=(160, 120), val_coco_json=coco, val_image_root=images)
    assert summary.iterations == 6 and summary.n_images == 120 and np.isfinite(summary.final_loss)
    assert 0.0 <= summary.eval["map50"] <= 1.0
    detector = load_detector(out)
    assert detector.classes == list(CLASSES) and detector.model_version == "fcos_mnv3s-tiny-s3"
    assert detector.meta["train"]["iterations"] == 6 and detector.meta["eval"]["n_images"] == 120
    assert detector.meta["train"]["class_counts"]["battery"] >= 0
    warm = train_detector(coco, images, tmp_path / "warm.pt", max_iters=2, batch_size=4, init_checkpoint=out,
                          model_version="warm")
    assert warm.warm_start == str(out) and warm.arch == "fcos_mnv3s"
    assert load_detector(tmp_path / "warm.pt").input_size == [160, 120]


def test_training_is_deterministic_per_seed(synth_small, tmp_path):
    coco, images = synth_small / "annotations.json", synth_small / "images"
    a = train_detector(coco, images, tmp_path / "a.pt", max_iters=3, batch_size=2, seed=5, input_size=(128, 96))
    b = train_detector(coco, images, tmp_path / "b.pt", max_iters=3, batch_size=2, seed=5, input_size=(128, 96))
    assert a.final_loss == pytest.approx(b.final_loss, rel=1e-5)


def test_bad_training_inputs_fail_clearly(synth_small, tmp_path):
    coco, images = synth_small / "annotations.json", synth_small / "images"
    with pytest.raises(InputError, match="epochs, max_iters or time_budget_s"):
        train_detector(coco, images, tmp_path / "x.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_coco(tmp_path / "none.json", images)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="not a COCO detection file"):
        load_coco(bad, images)
    with pytest.raises(InputError, match="class map"):
        load_coco(coco, images, classes=["cardboard"])


def test_committed_demo_detector_reaches_map50_on_unseen_frames(tmp_path):
    from curation.synth import SynthConfig, generate

    generate(tmp_path / "unseen", SynthConfig(frames=200, seed=123))
    result = evaluate(DEMO_CHECKPOINT, tmp_path / "unseen" / "annotations.json", tmp_path / "unseen" / "images")
    assert result["map50"] >= 0.6, result


def test_train_and_evaluate_commands(synth_small, tmp_path, settings_env):
    from click.testing import CliRunner

    from curation.cli import main

    out = tmp_path / "cli.pt"
    trained = CliRunner().invoke(main, ["train", "--data", str(synth_small), "--out", str(out), "--max-iters", "2",
                                        "--batch-size", "2", "--input-size", "128x96", "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.output)["iterations"] == 2 and out.exists()
    evaluated = CliRunner().invoke(main, ["evaluate", "--model", str(DEMO_CHECKPOINT), "--data", str(synth_small),
                                          "--limit", "16", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.output)
    assert result["n_images"] == 16 and 0.0 < result["map50"] <= 1.0
    bad = CliRunner().invoke(main, ["train", "--data", str(synth_small), "--out", str(out), "--epochs", "1",
                                    "--input-size", "big"])
    assert bad.exit_code == 1 and "WIDTHxHEIGHT" in bad.output
