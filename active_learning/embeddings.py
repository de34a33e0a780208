"""Image embeddings on disk, and the small vector helpers selection needs.

``VectorStore`` keeps one float16 vector per frame for one model version, in two append-only raw
files that are memory-mapped for reading:

    <root>/<model_version>/vectors.f16   (count, dim) float16, row-major
    <root>/<model_version>/frame_ids.i64 (count,) int64, catalog frame ids, row-aligned
    <root>/<model_version>/meta.json     {"dim", "count", ...}: the committed row count

An append writes the rows past the committed end, fsyncs them, and only then replaces
``meta.json`` atomically. A crash mid-append leaves bytes past ``count`` that no reader looks at
and the next append overwrites: what was stored is never corrupted. One writer at a time is
enforced with an advisory file lock. ``root`` is ``settings.state_dir / "vectors"``.

Index spaces: a *row* is a position in this store (``Prediction.embedding_row``); a *frame id* is
the catalog's ``Frame.id``. ``rows_for`` converts frame ids to rows; ``frame_ids()[row]`` back.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from curation.errors import InputError

VECTORS_FILE = "vectors.f16"
IDS_FILE = "frame_ids.i64"
META_FILE = "meta.json"
LOCK_FILE = ".lock"
# float16 keeps 3 significant digits: cosine distances between pooled features change < 1e-3,
# and the store is 4x smaller than float64 (1M x 1280 dims = 2.4 GiB instead of 9.8 GiB).
STORE_DTYPE = np.float16
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def safe_dirname(model_version: str) -> str:
    """The folder name of a model version: path separators and odd characters become '_'."""
    if not model_version or model_version in {".", ".."}:
        raise InputError(f"model_version {model_version!r} cannot name a vector store; use a non-empty name")
    return _SAFE_NAME.sub("_", model_version)


class VectorStore:
    """On-disk float16 vectors keyed by catalog frame id, for one model version (memory-mapped).

    >>> store = VectorStore(settings.state_dir / "vectors", "fcos-mnv3s-demo")
    >>> store.append(np.array([7, 9]), np.random.rand(2, 192))
    >>> store.rows_for(np.array([9, 8]))   # array([ 1, -1])
    """

    def __init__(self, root: str | os.PathLike, model_version: str):
        self.root = Path(root)
        self.model_version = model_version
        self.path = self.root / safe_dirname(model_version)
        self._index_cache: tuple[int, np.ndarray, np.ndarray] | None = None  # (count, sorted ids, rows)

    # ------------------------------------------------------------------ metadata
    def _meta(self) -> dict:
        try:
            return json.loads((self.path / META_FILE).read_text())
        except FileNotFoundError:
            return {"dim": None, "count": 0, "model_version": self.model_version}

    def __len__(self) -> int:
        return int(self._meta()["count"])

    @property
    def dim(self) -> int | None:
        """Vector dimension, or None while the store is empty."""
        return self._meta()["dim"]

    # ------------------------------------------------------------------ reading
    def _mmap(self, name: str, dtype, shape) -> np.ndarray:
        if shape[0] == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(self.path / name, dtype=dtype, mode="r", shape=shape)

    def frame_ids(self) -> np.ndarray:
        """``(N,)`` int64 frame ids, in row order."""
        count = len(self)
        return np.array(self._mmap(IDS_FILE, np.int64, (count,)), dtype=np.int64)

    def raw(self) -> np.ndarray:
        """``(N, D)`` float16 read-only memory map of all committed rows (no copy)."""
        meta = self._meta()
        return self._mmap(VECTORS_FILE, STORE_DTYPE, (int(meta["count"]), int(meta["dim"] or 0)))

    def vectors(self, dtype=np.float32) -> np.ndarray:
        """``(N, D)`` vectors in row order, converted to ``dtype`` (a copy)."""
        return np.asarray(self.raw(), dtype=dtype)

    def rows_for(self, frame_ids) -> np.ndarray:
        """``(N,)`` int64 store rows of ``frame_ids``; ``-1`` where a frame id is not stored."""
        query = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        count = len(self)
        if count == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        if self._index_cache is None or self._index_cache[0] != count:
            ids = self.frame_ids()
            order = np.argsort(ids, kind="stable")
            self._index_cache = (count, ids[order], order.astype(np.int64))
        _, sorted_ids, order = self._index_cache
        pos = np.searchsorted(sorted_ids, query)
        pos_clipped = np.minimum(pos, len(sorted_ids) - 1)
        found = sorted_ids[pos_clipped] == query
        return np.where(found, order[pos_clipped], -1).astype(np.int64)

    def get(self, frame_ids, dtype=np.float32) -> np.ndarray:
        """``(N, D)`` vectors of ``frame_ids``; raises InputError naming the first missing id."""
        rows = self.rows_for(frame_ids)
        if (rows < 0).any():
            missing = np.asarray(frame_ids).reshape(-1)[rows < 0][0]
            raise InputError(
                f"frame {int(missing)} has no embedding for model version {self.model_version!r}; "
                "run 'beltcurate score' with that model first"
            )
        return np.asarray(self.raw()[rows], dtype=dtype)

    # ------------------------------------------------------------------ writing
    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, frame_ids, vectors) -> None:
        """Store ``vectors`` ``(N, D)`` for ``frame_ids`` ``(N,)``; ids already stored are skipped.

        Duplicate ids inside one call keep their first vector. Crash-safe (see module docstring).
        """
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        vecs = np.asarray(vectors)
        if vecs.ndim != 2 or vecs.shape[0] != ids.shape[0]:
            raise InputError(
                f"vector store {self.model_version!r}: got {ids.shape[0]} frame ids but vectors of shape "
                f"{vecs.shape}; pass one (D,) row per frame id"
            )
        if ids.size == 0:
            return
        vecs16 = vecs.astype(STORE_DTYPE)
        if not np.isfinite(vecs16).all():
            raise InputError(
                f"vector store {self.model_version!r}: vectors contain NaN/inf (or exceed float16 range "
                "+-65504); normalise them before storing"
            )
        with self._locked():
            meta = self._meta()
            count, dim = int(meta["count"]), meta["dim"]
            if dim is not None and int(dim) != vecs.shape[1]:
                raise InputError(
                    f"vector store {self.model_version!r} holds {dim}-d vectors, got {vecs.shape[1]}-d; "
                    "one model version has one embedding size"
                )
            _, first = np.unique(ids, return_index=True)
            keep = np.zeros(ids.shape, dtype=bool)
            keep[np.sort(first)] = True
            self._index_cache = None
            keep &= self.rows_for(ids) < 0
            if not keep.any():
                return
            new_ids, new_vecs = ids[keep], np.ascontiguousarray(vecs16[keep])
            row_bytes = vecs.shape[1] * np.dtype(STORE_DTYPE).itemsize
            for name, data, itemsize in (
                (VECTORS_FILE, new_vecs, row_bytes),
                (IDS_FILE, new_ids, np.dtype(np.int64).itemsize),
            ):
                with open(self.path / name, "r+b" if (self.path / name).exists() else "w+b") as handle:
                    handle.seek(count * itemsize)
                    handle.write(data.tobytes())
                    handle.truncate()
                    handle.flush()
                    os.fsync(handle.fileno())
            meta.update(dim=int(vecs.shape[1]), count=count + int(new_ids.size), dtype="float16",
                        model_version=self.model_version)
            tmp = self.path / (META_FILE + ".tmp")
            with open(tmp, "w") as handle:
                handle.write(json.dumps(meta))
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.path / META_FILE)
            self._index_cache = None


def l2_normalize(vectors) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32; all-zero rows stay zero."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


def pca_reduce(vectors, dim: int, seed: int = 0) -> np.ndarray:
    """Project ``(N, D)`` vectors on their first ``dim`` principal components: ``(N, dim)`` float32.

    ``dim <= 0`` or ``dim >= D`` returns the vectors unchanged (as float32, ``(N, D)``). With fewer
    rows than ``dim`` only ``N`` components exist; the remaining columns are zero, so distances are
    those of the ``N``-component projection. Deterministic per ``seed``.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(f"pca_reduce needs a (N, D) array, got shape {array.shape}")
    n_rows, n_dims = array.shape
    if dim <= 0 or dim >= n_dims:
        return array.copy()
    out = np.zeros((n_rows, dim), dtype=np.float32)
    n_components = min(dim, n_rows)
    if n_components == 0:
        return out
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="randomized" if n_components < min(array.shape) else "full",
              random_state=seed)
    out[:, :n_components] = pca.fit_transform(array).astype(np.float32)
    return out
