"""Approximate nearest neighbours of a dataset's descriptors, for "more like this" at a million
faces (issue 21), and the k-nearest-neighbour graph behind duplicates and identity clusters.

Why faiss-cpu's IVF-Flat: measured by bench/ann_libraries.py on realistic descriptors (bench/
million_vectors.py's, around real dev descriptors) on this 2-core machine, shared with other jobs
(README "A million faces"). The HNSW libraries answer in well under a millisecond, but building
their graph is what a 2-core host cannot afford: hnswlib took 1,192 s for 1M (recall@10 0.94 at
ef 64, 0.99 at 128) and usearch 431 s for 200,000 (its default expansion 128; 110 s at 64), so an
all-faces neighbour graph would not fit in 10 minutes. IVF-Flat (k-means lists, each query scans
the vectors of its NPROBE nearest lists, exactly) builds 200,000 in 35 s with recall@10 0.9995
at 8 probes (p50 0.17 ms) and 1.0 at 16 (0.31 ms). It also adds and removes vectors by id, which
the incremental update needs (faiss's HNSW cannot remove; hnswlib ships no wheel), and faiss-cpu
installs as a wheel. Its lists are trained once: when a dataset has grown REBUILD_GROWTH times
past the size they were trained on, the worker trains new ones.

Small datasets are searched by brute force instead (selectors.VectorIndex): exact, and below
ANN_MIN_FACES a matrix-vector product is as fast as the graph (bench/ann_libraries.py's
brute_p50_ms), with nothing to build or store.

The index lives in Django storage (datasets/<id>/ann/index.npz: the faiss index, its keys = face ids
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
import os
import threading

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

# Below this many faces brute force (exact) answers about as fast: 0.25 ms at 10,000, 9 ms at
# 50,000, 28 ms at 100,000, 179 ms at 1M (bench/ann_libraries.py).
ANN_MIN_FACES = 20_000
# Lists: 4 sqrt(n) (faiss's advice for IVF), trained on TRAIN_PER_LIST vectors a list at most.
LISTS_PER_SQRT = 4
TRAIN_PER_LIST = 40
# Lists a query scans: 16 gave recall@10 1.0 at 200,000 realistic descriptors (8 gave 0.9995);
# the all-faces graph scans 8 (its edges are the very near neighbours, the easiest to find).
NPROBE = 16
GRAPH_NPROBE = 8
REBUILD_GROWTH = 4
# A web process applies at most this many changed faces itself (adding to IVF lists is cheap: the
# nearest list of each); a larger difference is the worker's (ann_update), brute force answers
# meanwhile.
SYNC_MAX = 20_000

_FINGERPRINT = np.random.default_rng(21).integers(1, 2**63, size=128, dtype=np.uint64) | np.uint64(1)


def fingerprints(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint of each vector's bytes (a changed descriptor changes it)."""
    bits = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32).astype(np.uint64)
    weights = _FINGERPRINT[: bits.shape[1]]
    with np.errstate(over="ignore"):
        return (bits * weights).sum(axis=1, dtype=np.uint64)


def new_index(vectors: np.ndarray, *, seed: int = 0):
    """An empty IVF-Flat index whose lists are trained on (a sample of) these vectors."""
    import faiss

    n, dimensions = vectors.shape
    lists = max(1, min(int(LISTS_PER_SQRT * np.sqrt(n)), n // 8 or 1))
    rng = np.random.default_rng(seed)
    sample = vectors if n <= TRAIN_PER_LIST * lists else vectors[rng.choice(n, TRAIN_PER_LIST * lists, replace=False)]
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dimensions), dimensions, lists)
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = NPROBE
    return index


class AnnIndex:
    """A faiss IVF-Flat index of face ids -> vectors, with the fingerprint of each stored vector
    and the number of vectors its lists were trained for."""

    def __init__(self, index, keys: np.ndarray, prints: np.ndarray, stamp: tuple = (), trained: int = 0):
        self.index = index
        self.trained = trained or len(keys)
        order = np.argsort(keys, kind="stable")
        self.keys = np.asarray(keys, dtype=np.int64)[order]
        self.prints = np.asarray(prints, dtype=np.uint64)[order]
        self.stamp = stamp
        self.lock = threading.Lock()

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, *, stamp: tuple = ()) -> AnnIndex:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        index = new_index(vectors)
        index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        return cls(index, ids, fingerprints(vectors), stamp, trained=len(ids))

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

    def sync(self, ids: np.ndarray, vectors: np.ndarray, *, stamp: tuple = ()) -> int:
        """Apply the difference with ids -> vectors (module docstring); returns faces changed."""
        ids = np.asarray(ids, dtype=np.int64)
        changed, gone = self.difference(ids, vectors)
        with self.lock:
            replaced = ids[changed][np.isin(ids[changed], self.keys)]
            stale = np.concatenate([gone, replaced])
            if len(stale):
                self.index.remove_ids(np.ascontiguousarray(stale, dtype=np.int64))
            if len(changed):
                self.index.add_with_ids(
                    np.ascontiguousarray(vectors[changed], dtype=np.float32), np.ascontiguousarray(ids[changed])
                )
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
        import faiss

        with self.lock:
            # One query: one thread (OpenMP threads waiting on each other cost more than they
            # save, and a web process answers several requests at once).
            faiss.omp_set_num_threads(1)
            d2, keys = self.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), count)
        distances = np.sqrt(np.maximum(d2[0].astype(np.float64), 0))
        found = [
            (int(f), float(d)) for f, d in zip(keys[0], distances, strict=True) if f >= 0 and int(f) not in exclude
        ]
        return found[:k]

    def neighbours(self, vectors: np.ndarray, k: int, *, nprobe: int = GRAPH_NPROBE) -> tuple[np.ndarray, np.ndarray]:
        """(keys int64 [n, k], squared distances float32 [n, k]) of the k nearest stored vectors
        of each row, nearest first, -1 / inf where fewer were found (all cores)."""
        import faiss

        with self.lock:
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            d2, keys = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k, params=params)
            faiss.omp_set_num_threads(1)
        d2 = d2.astype(np.float32)
        d2[keys < 0] = np.inf
        return keys.astype(np.int64), d2

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=self.keys,
            prints=self.prints,
            stamp=np.asarray(self.stamp, dtype=np.int64),
            trained=np.asarray(self.trained, dtype=np.int64),
            index=faiss_bytes(self.index),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AnnIndex:
        import faiss

        stored = np.load(io.BytesIO(data))
        index = faiss.deserialize_index(stored["index"])
        stamp = tuple(int(v) for v in stored["stamp"])
        return cls(index, stored["keys"], stored["prints"], stamp, trained=int(stored["trained"]))


def faiss_bytes(index) -> np.ndarray:
    import faiss

    return faiss.serialize_index(index)


def storage_name(dataset_id: int) -> str:
    # Under the dataset's own folder, so deleting the dataset (and the orphan sweep) removes it.
    return f"datasets/{int(dataset_id)}/ann/index.npz"


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
    if stored is None or len(ids) > REBUILD_GROWTH * stored.trained:
        # First time, or the lists were trained for a much smaller dataset: new lists.
        stored = AnnIndex.build(ids, vectors, stamp=stamp)
        changed = len(stored)
    else:
        changed = stored.sync(ids, vectors, stamp=stamp)
    ann_save(dataset_id, stored)
    with _cache_lock:
        _cache[dataset_id] = stored
    return changed
