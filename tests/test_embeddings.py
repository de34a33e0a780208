"""VectorStore (append-only float16 memmap keyed by frame id) and the PCA / normalisation helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_learning.embeddings import IDS_FILE, META_FILE, VECTORS_FILE, VectorStore, l2_normalize, pca_reduce
from curation.errors import InputError


def test_append_and_read_back_by_frame_id(tmp_path):
    store = VectorStore(tmp_path, "fcos-v1")
    assert len(store) == 0 and store.dim is None
    assert store.vectors().shape == (0, 0)
    first = np.random.default_rng(0).normal(size=(3, 16))
    store.append(np.array([10, 4, 7]), first)
    store.append(np.array([7, 12]), np.ones((2, 16)))  # 7 already stored: skipped
    assert len(store) == 4 and store.dim == 16
    np.testing.assert_array_equal(store.frame_ids(), [10, 4, 7, 12])
    np.testing.assert_array_equal(store.rows_for([12, 10, 99, 7]), [3, 0, -1, 2])
    np.testing.assert_allclose(store.get([4, 7]), first[1:], atol=2e-3)
    assert store.vectors().dtype == np.float32 and isinstance(store.raw(), np.memmap)
    assert store.raw().dtype == np.float16


def test_reopened_store_sees_the_same_rows(tmp_path):
    VectorStore(tmp_path, "m").append(np.array([1, 2]), np.eye(2))
    again = VectorStore(tmp_path, "m")
    np.testing.assert_array_equal(again.rows_for([2, 1]), [1, 0])
    np.testing.assert_allclose(again.vectors(), np.eye(2))


def test_model_versions_are_separate_folders_and_names_are_sanitised(tmp_path):
    a, b = VectorStore(tmp_path, "fcos/v1"), VectorStore(tmp_path, "fcos-v2")
    a.append([1], np.ones((1, 4)))
    assert len(b) == 0
    assert a.path.parent == tmp_path and "/" not in a.path.name


def test_duplicate_ids_in_one_call_keep_the_first_vector(tmp_path):
    store = VectorStore(tmp_path, "m")
    store.append([5, 5, 6], np.array([[1.0, 0], [0, 1.0], [2.0, 2.0]]))
    np.testing.assert_array_equal(store.frame_ids(), [5, 6])
    np.testing.assert_allclose(store.get([5]), [[1.0, 0.0]])


def test_bad_inputs_are_clear_errors(tmp_path):
    store = VectorStore(tmp_path, "m")
    store.append([1], np.ones((1, 8)))
    with pytest.raises(InputError, match="8-d"):
        store.append([2], np.ones((1, 4)))
    with pytest.raises(InputError, match="frame ids"):
        store.append([2, 3], np.ones((1, 8)))
    with pytest.raises(InputError, match="NaN"):
        store.append([2], np.full((1, 8), np.nan))
    with pytest.raises(InputError, match="frame 9 has no embedding"):
        store.get([1, 9])
    with pytest.raises(InputError):
        VectorStore(tmp_path, "..")


def test_a_crash_mid_append_never_corrupts_stored_rows(tmp_path, monkeypatch):
    store = VectorStore(tmp_path, "m")
    store.append([1, 2], np.array([[1.0, 1.0], [2.0, 2.0]]))
    # The process dies after writing the data but before publishing the new count.
    import pathlib

    def die(self, target):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pathlib.Path, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        store.append([3, 4], np.array([[3.0, 3.0], [4.0, 4.0]]))
    monkeypatch.undo()
    assert (store.path / VECTORS_FILE).stat().st_size > 2 * 2 * 2  # the orphan bytes are on disk
    fresh = VectorStore(tmp_path, "m")
    assert len(fresh) == 2
    np.testing.assert_array_equal(fresh.rows_for([3]), [-1])
    fresh.append([5], np.array([[5.0, 5.0]]))  # overwrites the orphan bytes
    np.testing.assert_array_equal(fresh.frame_ids(), [1, 2, 5])
    np.testing.assert_allclose(fresh.vectors(), [[1, 1], [2, 2], [5, 5]])
    assert json.loads((fresh.path / META_FILE).read_text())["count"] == 3
    assert (fresh.path / IDS_FILE).stat().st_size == 3 * 8


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 30), max_size=8), max_size=6))
def test_store_behaves_like_a_first_write_wins_dict(tmp_path_factory, batches):
    store = VectorStore(tmp_path_factory.mktemp("vs"), "m")
    expected: dict[int, float] = {}
    for k, ids in enumerate(batches):
        values = np.array([[float(k * 100 + j)] for j in range(len(ids))]).reshape(-1, 1)
        store.append(np.array(ids, dtype=np.int64), values)
        for j, frame_id in enumerate(ids):
            expected.setdefault(frame_id, float(k * 100 + j))
    assert sorted(store.frame_ids().tolist()) == sorted(expected)
    if expected:
        ids = np.array(sorted(expected))
        np.testing.assert_allclose(store.get(ids)[:, 0], [expected[i] for i in ids], rtol=1e-3)


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_pca_reduce_matches_sklearn_distances_and_is_deterministic():
    rng = np.random.default_rng(1)
    low_rank = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 64))
    reduced = pca_reduce(low_rank, 8, seed=3)
    assert reduced.shape == (200, 8) and reduced.dtype == np.float32
    np.testing.assert_array_equal(reduced, pca_reduce(low_rank, 8, seed=3))
    # A rank-5 cloud keeps its pairwise distances under an 8-d projection.
    d_full = np.linalg.norm(low_rank[:20, None] - low_rank[None, :20], axis=2)
    d_red = np.linalg.norm(reduced[:20, None] - reduced[None, :20], axis=2)
    np.testing.assert_allclose(d_red, d_full, rtol=1e-3, atol=1e-3)


def test_pca_reduce_edge_cases():
    vectors = np.random.default_rng(2).normal(size=(3, 10))
    np.testing.assert_allclose(pca_reduce(vectors, 0), vectors.astype(np.float32))
    np.testing.assert_allclose(pca_reduce(vectors, 10), vectors.astype(np.float32))
    few = pca_reduce(vectors, 6)
    assert few.shape == (3, 6) and np.all(few[:, 3:] == 0)
    with pytest.raises(InputError):
        pca_reduce(np.ones(5), 2)
