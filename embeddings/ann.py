"""Approximate nearest neighbours of a dataset's descriptors, for "more like this" at a million
faces (issue 21), and the k-nearest-neighbour graph behind duplicates and identity clusters.

Why usearch (HNSW): measured by bench/ann_libraries.py at 1,000,000 x 128 float32 realistic
descriptors on this 2-core machine (README "A million faces"): hnswlib, faiss-cpu's HNSW and
usearch reach recall@10 >= 0.95 within a millisecond or two a query; faiss-cpu's IVF-Flat needs
many probes for the same recall. Of the HNSW three only usearch both ships wheels (hnswlib 0.8.0
is compiled from source on install) and removes and replaces vectors by key (faiss's HNSW cannot
remove), which the incremental update below needs: a recomputed descriptor replaces its face's
vector, a deleted face leaves the index.

Small datasets are searched by brute force instead (selectors.VectorIndex): exact, and below
ANN_MIN_FACES a matrix-vector product is as fast as the graph (bench/ann_libraries.py's
brute_p50_ms), with nothing to build or store.

The index lives in Django storage (ann/dataset-<id>.npz: the usearch index, its keys = face ids
and a fingerprint of each vector), so every web and worker host loads the same file; each process
loads it lazily and keeps it per dataset (_cache). When the dataset's descriptors changed since
(DescriptorSet.stamp), only the difference is applied: faces whose vector is new or changed are
added (replacing), faces gone are removed. The embed worker saves the updated index after a
dataset's last descriptor batch (ann_update); a web process applies a small difference itself
(at most SYNC_MAX faces, a second or so) and answers by brute force while a larger one waits for
the worker.

    ann = dataset_ann(dataset_id, vectors, stamp)   # AnnIndex, or None: use brute force
    ann.query(vector, k=20)                        # [(face id, distance), ...] nearest first
"""

from __future__ import annotations

import io
import logging
import threading

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

# Below this many faces brute force (exact) answers as fast (bench/ann_libraries.py).
ANN_MIN_FACES = 50_000
# HNSW parameters: 16 links a node and 128 candidates while building (usearch's defaults);
# 96 candidates a search gave recall@10 0.99 at 1M (bench/ann_libraries.py).
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 96
# A web process applies at most this many changed faces itself (usearch adds ~10,000 a second on
# one core); a larger difference is the worker's (ann_update) and brute force answers meanwhile.
SYNC_MAX = 10_000

_FINGERPRINT = np.random.default_rng(21).integers(1, 2**63, size=128, dtype=np.uint64) | np.uint64(1)


def fingerprints(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each vector's bytes (a changed descriptor changes it)."""
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    weights = _FINGERPRINT[: bits.shape[1]]
    with np.errstate(over="ignore"):
        return (bits * weights).sum(axis=1, dtype=np.uint64)


def new_index(dimensions: int = 128):
    from usearch.index import Index

    return Index(
        ndim=dimensions,
        metric="l2sq",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


class AnnIndex:
    """A usearch HNSW index of face ids -> vectors, with the fingerprint of each stored vector."""

    def __init__(self, index, keys: np.ndarray, prints: np.ndarray, stamp: tuple = ()):
        self.index = index
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.prints = np.asarray(prints, dtype=np.uint64)[order]
        self.stamp = stamp
        self.lock = threading.Lock()

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, stamp: tuple = (), threads: int = 0) -> AnnIndex:
        index = new_index(vectors.shape[1] if vectors.ndim == 2 else 128)
        if len(ids):
            index.add(np.asarray(ids, dtype=np.int64), np.ascontiguousarray(vectors, dtype=np.float32), threads=threads)
        return cls(index, ids, fingerprints(vectors), stamp)

    def __len__(self) -> int:
        return len(self.keys)

    def difference(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in `ids` to add or replace, stored keys to remove) to match ids -> vectors."""
        ids = np.asarray(ids, dtype=np.int64)
        prints = fingerprints(vectors)
        where = np.searchsorted(self.keys, ids)
        where = np.minimum(where, max(len(self.keys) - 1, 0))
        known = (self.keys[where] == ids) if len(self.keys) else np.zeros(len(ids), dtype=bool)
        same = known & (self.prints[where] == prints) if len(self.keys) else known
        gone = self.keys[~np.isin(self.keys, ids)]
        return np.flatnonzero(~same), gone

    def sync(self, ids: np.ndarray, vectors: np.ndarray, *, stamp: tuple = (), threads: int = 0) -> int:
        """Apply the difference with ids -> vectors (module docstring); returns faces changed."""
        ids = np.asarray(ids, dtype=np.int64)
        changed, gone = self.difference(ids, vectors)
        with self.lock:
            replaced = ids[changed][np.isin(ids[changed], self.keys)]
            stale = np.concatenate([gone, replaced])
            if len(stale):
                self.index.remove(stale)
            if len(changed):
                self.index.add(ids[changed], np.ascontiguousarray(vectors[changed], dtype=np.float32), threads=threads)
            keep = ~np.isin(self.keys, stale)
            keys = np.concatenate([self.keys[keep], ids[changed]])
            prints = np.concatenate([self.prints[keep], fingerprints(vectors[changed])])
            order = np.argsort(keys, kind="stable")
            self.keys, self.prints, self.stamp = keys[order], prints[order], stamp
        return len(changed) + len(gone)

    def query(self, vector: np.ndarray, *, k: int, exclude_ids=()) -> list[tuple[int, float]]:
        if not len(self) or k <= 0:
            return []
        exclude = {int(i) for i in exclude_ids}
        count = min(len(self), k + len(exclude))
        matches = self.index.search(np.asarray(vector, dtype=np.float32).reshape(-1), count, threads=1)
        keys = np.asarray(matches.keys, dtype=np.int64)
        distances = np.sqrt(np.maximum(np.asarray(matches.distances, dtype=np.float64), 0))
        found = [(int(f), float(d)) for f, d in zip(keys, distances, strict=True) if int(f) not in exclude]
        return found[:k]

    def neighbours(self, vectors: np.ndarray, k: int, *, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64 [n, k], squared distances float32 [n, k]) of the k nearest stored vectors
        of each row, -1 / inf where fewer were found."""
        matches = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k, threads=threads)
        keys = np.asarray(matches.keys, dtype=np.int64).reshape(len(vectors), -1)
        d2 = np.asarray(matches.distances, dtype=np.float32).reshape(len(vectors), -1)
        counts = np.asarray(matches.counts).reshape(-1)
        missing = np.arange(keys.shape[1])[None, :] >= counts[:, None]
        keys[missing] = -1
        d2[missing] = np.inf
        return keys, d2

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=self.keys,
            prints=self.prints,
            stamp=np.asarray(self.stamp, dtype=np.int64),
            index=np.frombuffer(self.index.save(), dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnnIndex:
        stored = np.load(io.BytesIO(data))
        index = new_index()
        index.load(stored["index"].tobytes())
        return cls(index, stored["keys"], stored["prints"], tuple(int(v) for v in stored["stamp"]))


def storage_name(dataset_id: int) -> str:
    return f"ann/dataset-{int(dataset_id)}.npz"


def ann_save(dataset_id: int, ann: AnnIndex) -> None:
    """Replace the dataset's stored index (a reader sees the old file or the new one)."""
    name = storage_name(dataset_id)
    data = ann.to_bytes()
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(data))


def ann_load(dataset_id: int) -> AnnIndex | None:
    name = storage_name(dataset_id)
    try:
        with default_storage.open(name, "rb") as handle:
            return AnnIndex.from_bytes(handle.read())
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        if default_storage.exists(name):
            logger.warning("the stored index of dataset %s could not be read: %r", dataset_id, exc)
        return None


def ann_delete(dataset_id: int) -> None:
    name = storage_name(dataset_id)
    if default_storage.exists(name):
        default_storage.delete(name)
    with _cache_lock:
        _cache.pop(dataset_id, None)


_cache: dict[int, AnnIndex] = {}
_cache_lock = threading.Lock()


def dataset_ann(
    dataset_id: int, ids: np.ndarray, vectors: np.ndarray, stamp: tuple, *, sync_max: int | None = SYNC_MAX
) -> AnnIndex | None:
    """The dataset's index matching ids -> vectors (its current descriptors at `stamp`), or None
    where brute force should answer: a small dataset, or no stored index within `sync_max`
    changed faces of them (None: any difference is applied here, as the worker does)."""
    if len(ids) < ANN_MIN_FACES:
        return None
    with _cache_lock:
        ann = _cache.get(dataset_id)
    if ann is not None and ann.stamp == stamp:
        return ann
    if ann is None:
        ann = ann_load(dataset_id)
        if ann is None and sync_max is not None:
            return None
        if ann is None:
            ann = AnnIndex.build(ids, vectors, stamp=stamp)
    if ann.stamp != stamp:
        changed, gone = ann.difference(ids, vectors)
        if sync_max is not None and len(changed) + len(gone) > sync_max:
            return None
        ann.sync(ids, vectors, stamp=stamp)
    with _cache_lock:
        _cache[dataset_id] = ann
    return ann


def ann_update(dataset_id: int, ids: np.ndarray, vectors: np.ndarray, stamp: tuple) -> int:
    """The worker's side: the stored index brought to ids -> vectors (built the first time the
    dataset is large enough), saved for every host and kept in this process. Returns the faces
    added, replaced or removed."""
    if len(ids) < ANN_MIN_FACES:
        return 0
    with _cache_lock:
        ann = _cache.get(dataset_id)
    stored = ann_load(dataset_id) if ann is None else ann
    if stored is not None and stored.stamp == stamp:
        return 0
    if stored is None:
        stored = AnnIndex.build(ids, vectors, stamp=stamp)
        changed = len(stored)
    else:
        changed = stored.sync(ids, vectors, stamp=stamp)
    ann_save(dataset_id, stored)
    with _cache_lock:
        _cache[dataset_id] = stored
    return changed
