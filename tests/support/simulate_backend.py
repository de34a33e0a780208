"""A cheap simulation backend of fixed arrays: no training, so the loop's bookkeeping tests run in
seconds. Its "mAP" grows with the number of labeled frames and with how many distinct belt
sequences they cover, so strategies that differ in what they pick get different curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from active_learning.detectors import Detections
from active_learning.simulate import PoolScores


class ArrayBackend:
    def __init__(self, data, embedding_dim: int = 8):
        self.data = data
        self.n = len(data.pool_ids)
        self.n_classes = len(data.classes)
        self.dim = embedding_dim
        self.trained: dict[str, list[int]] = {}  # checkpoint -> image ids it was trained on
        self.calls: list[tuple] = []

    def train(self, train_json, out, *, init, iters, seed) -> float:
        ids = [img["id"] for img in json.loads(Path(train_json).read_text())["images"]]
        self.trained[str(out)] = ids
        self.calls.append(("train", str(out), None if init is None else str(init), iters, seed))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(ids))
        return 0.0

    def _ids(self, checkpoint) -> list[int]:
        # a resumed run starts from checkpoints an earlier backend wrote
        return self.trained.get(str(checkpoint)) or json.loads(Path(checkpoint).read_text())

    def evaluate(self, checkpoint) -> dict:
        ids = self._ids(checkpoint)
        sequences = {self.data.groups[i] for i in ids}
        value = float(1 - np.exp(-(len(ids) + 3 * len(sequences)) / 200))
        return {"map50": value, "map": value / 2, "per_class_ap50": {name: value / 3 for name in self.data.classes}}

    def score(self, checkpoint) -> PoolScores:
        rng = np.random.default_rng(len(self._ids(checkpoint)))
        emb = rng.normal(size=(self.n, self.dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        predictions = []
        for row in range(self.n):
            probs = rng.dirichlet(np.ones(self.n_classes)).astype(np.float32)[None, :]
            predictions.append(Detections([[0, 0, 20, 20]], [int(probs.argmax())], [float(probs.max())], probs,
                                          emb[row], "sigmoid"))
        return PoolScores(rng.random(self.n), emb, predictions, 0.0)
