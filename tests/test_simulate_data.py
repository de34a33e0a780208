"""Reading labeled sets for the simulation: COCO, YOLO with its own test split, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from active_learning.simulate import prepare_data, rare_class_of, write_coco_subset
from curation.errors import InputError


def _yolo(root, splits):
    (root / "data.yaml").write_text("train: train/images\nval: valid/images\ntest: test/images\nnames: ['can', 'glass']\n")
    for split, n in splits.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((40, 60, 3), 10 * i, np.uint8)).save(root / split / "images" / f"{split}{i}.jpg")
            rows = "0 0.5 0.5 0.2 0.4\n" + ("1 0.2 0.2 0.1 0.1\n" if i == 0 else "")
            (root / split / "labels" / f"{split}{i}.txt").write_text(rows)
    return root


def test_yolo_set_uses_its_own_test_split(tmp_path):
    data = prepare_data(_yolo(tmp_path, {"train": 5, "valid": 2, "test": 3}), test_frames=1)
    by_id = data.images_by_id
    assert sorted(by_id[int(i)]["split"] for i in data.test_ids) == ["test"] * 3
    assert len(data.pool_ids) == 7
    gt = data.gt_by_id()
    first_train = next(int(i) for i in data.pool_ids if by_id[int(i)]["file_name"].endswith("train0.jpg"))
    boxes, labels = gt[first_train]
    assert labels.tolist() == [0, 1]
    assert boxes[0].tolist() == pytest.approx([24.0, 12.0, 36.0, 28.0])  # cx .5 w .2 of 60 px; cy .5 h .4 of 40 px
    assert rare_class_of(data, None) == "glass"  # the pool's least frequent class
    out = write_coco_subset(data, data.test_ids, tmp_path / "t.json")
    assert out.is_file()


def test_missing_data_names_the_fix(tmp_path):
    with pytest.raises(InputError, match="neither a COCO file"):
        prepare_data(tmp_path)


def test_too_large_test_split_is_refused(synth_small):
    with pytest.raises(InputError, match="--test-frames"):
        prepare_data(synth_small, test_frames=10_000)


def test_unknown_rare_class_is_refused(synth_small):
    data = prepare_data(synth_small, test_frames=30)
    assert rare_class_of(data, None) == "battery"
    with pytest.raises(InputError, match="--rare-class 'unicorn'"):
        rare_class_of(data, "unicorn")
