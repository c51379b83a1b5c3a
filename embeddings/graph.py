"""Pairs of close vectors and of close 64-bit hashes, for near-duplicates and identity clusters.
No database, so benchmarks and tests call it on any vectors.

Close vectors: exact (blocks of the distance matrix) up to EXACT_MAX vectors; above, each
vector's k nearest from an IVF-Flat index (embeddings.ann, faiss), the edges kept within the
radius: a million descriptors give their 30-nearest graph in a few minutes on 2 cores where the
exact matrix would take hours. The groups built on that graph agree with exact search's (adjusted
Rand index >= 0.99 on 50,000 faces, bench/million_vectors.py)."""

from __future__ import annotations

import hashlib
import threading
from itertools import combinations

import numpy as np

# Rows per block of the distance matrix: a block of 512 rows against 100,000 vectors is 200 MB of
# float32, so memory stays bounded whatever the dataset's size.
BLOCK = 512
# Above this many vectors, pairs come from the approximate k-nearest graph (module docstring):
# 50,000 vectors are 2.5e9 distances (about 30 s here), the graph's search a few seconds.
EXACT_MAX = 50_000
# Neighbours asked of the index when the caller wants every pair within the radius (no k).
ANN_K = 30
# Neighbours the graph is computed with at least (each caller's k + 1 for the vector itself).
GRAPH_K = ANN_K + 1


def close_pairs(vectors: np.ndarray, radius: float, *, k: int | None = None, exact: bool | None = None) -> np.ndarray:
    """[m, 3] rows (i, j, distance) with i < j of the vectors closer than `radius` (Euclidean);
    with `k`, only each vector's k nearest within the radius (bounds the edges of a big set).
    `exact` None: exact up to EXACT_MAX vectors, approximate above (ANN_K nearest without `k`)."""
    n = len(vectors)
    if exact is None:
        exact = n <= EXACT_MAX
    if exact or n < 2:
        return exact_close_pairs(vectors, radius, k=k)
    return ann_close_pairs(vectors, radius, k=k or ANN_K)


def ann_close_pairs(vectors: np.ndarray, radius: float, *, k: int) -> np.ndarray:
    """close_pairs from an IVF index of the vectors: each vector's k nearest within the radius."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    keys, d2 = nearest_graph(vectors, min(k + 1, n))
    found = []
    for start in range(0, n, 100_000):  # bounded memory: 100,000 rows of pairs at a time
        block_keys, block_d2 = keys[start : start + 100_000, : k + 1], d2[start : start + 100_000, : k + 1]
        rows = np.repeat(np.arange(start, start + len(block_keys))[:, None], block_keys.shape[1], axis=1)
        hit = (block_keys >= 0) & (block_keys != rows) & (block_d2 < radius * radius)
        i, j = rows[hit], block_keys[hit]
        found.append(np.stack([np.minimum(i, j), np.maximum(i, j), np.sqrt(np.maximum(block_d2[hit], 0))], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 3))
    if not len(pairs):
        return np.zeros((0, 3))
    # Each unordered pair once (found from both ends): one int64 key a pair sorts far faster
    # than unique rows.
    keys = pairs[:, 0].astype(np.int64) * n + pairs[:, 1].astype(np.int64)
    _, first = np.unique(keys, return_index=True)
    return pairs[np.sort(first)]


# The last k-nearest graph computed in this process: identity clusters, duplicates and uniqueness
# of one dataset ask for the same vectors' neighbours one after another (the map task and the
# embed worker), and a million faces' graph costs minutes; one graph is kept (a million faces x
# 31 neighbours is 370 MB).
_graph_memo: dict = {}
_graph_lock = threading.Lock()


def nearest_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions int64 [n, >=k], squared distances float32 [n, >=k]) of each vector's k nearest
    vectors (itself usually first), nearest first, -1 / inf where fewer were found: an IVF index
    of the vectors (embeddings.ann) searched for every one of them. Kept for the next call with
    the same vectors and no larger k."""
    from embeddings.ann import AnnIndex

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    key = (vectors.shape, hashlib.blake2b(vectors.data, digest_size=16).hexdigest())
    with _graph_lock:
        memo = _graph_memo.get("graph")
        if memo and memo[0] == key and memo[1].shape[1] >= k:
            return memo[1], memo[2]
        n = len(vectors)
        index = AnnIndex.build(np.arange(n, dtype=np.int64), vectors)
        k = max(k, GRAPH_K)
        parts = [index.neighbours(vectors[s : s + 100_000], min(k, n)) for s in range(0, n, 100_000)]
        del index
        keys = np.concatenate([p[0] for p in parts])
        d2 = np.concatenate([p[1] for p in parts])
        _graph_memo["graph"] = (key, keys, d2)
        return keys, d2


def exact_close_pairs(vectors: np.ndarray, radius: float, *, k: int | None = None) -> np.ndarray:
    """close_pairs by brute force, block by block."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n < 2:
        return np.zeros((0, 3))
    norms = np.einsum("ij,ij->i", vectors, vectors)
    found = []
    for start in range(0, n, BLOCK):
        block = vectors[start : start + BLOCK]
        squared = norms[start : start + BLOCK, None] - 2 * block @ vectors.T + norms[None, :]
        rows = np.arange(start, start + len(block))
        squared[np.arange(len(block)), rows] = np.inf  # never a vector with itself
        if k is not None and k < n - 1:
            nearest = np.argpartition(squared, k, axis=1)[:, :k]
            d2 = np.take_along_axis(squared, nearest, axis=1)
            hit = d2 < radius * radius
            i = np.repeat(rows[:, None], k, axis=1)[hit]
            j = nearest[hit]
            d = np.sqrt(np.maximum(d2[hit], 0))
        else:
            r, j = np.nonzero(squared < radius * radius)
            i = rows[r]
            d = np.sqrt(np.maximum(squared[r, j], 0))
        found.append(np.stack([np.minimum(i, j), np.maximum(i, j), d], axis=1))
    pairs = np.concatenate(found)
    if not len(pairs):
        return pairs
    # Each unordered pair once (it is found from both ends).
    _, first = np.unique(pairs[:, :2].astype(np.int64), axis=0, return_index=True)
    return pairs[np.sort(first)]


def hash_pairs(ids: list[int], hashes: list[int], max_distance: int) -> list[tuple[int, int]]:
    """Pairs of ids whose 64-bit hashes differ in at most `max_distance` bits.

    Multi-index hashing: the hash is cut into four 16-bit chunks. If two hashes differed in more
    than r bits in every chunk they would differ in at least 4(r+1) bits, so with
    r = ceil((max_distance+1)/4) - 1 a close pair agrees within r bits on some chunk. For each
    chunk, every hash probes the sorted chunk values at its own value and at each value up to r
    bits away (a table of where each value starts, vectorised over all hashes), and only those
    candidates are compared: 100,000 faces at distance 6 take about a second instead of 5*10^9
    comparisons. Equal ids are never paired (several hashes may share an id)."""
    n = len(ids)
    if n < 2:
        return []
    arr = np.array([h & 0xFFFFFFFFFFFFFFFF for h in hashes], dtype=np.uint64)
    id_arr = np.array(ids, dtype=np.int64)
    r = max(0, -(-(max_distance + 1) // 4) - 1)
    flips = [0] + [sum(1 << b for b in bits) for k in range(1, r + 1) for bits in combinations(range(16), k)]
    index = np.arange(n)
    found: list = []
    for lo in (0, 16, 32, 48):
        keys = ((arr >> np.uint64(lo)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        # Where each of the 65,536 chunk values starts in sorted order: probes become table lookups.
        starts_of = np.searchsorted(keys[order], np.arange(0x10001))
        for flip in flips:
            probe = keys ^ flip
            left = starts_of[probe]
            counts = starts_of[probe + 1] - left
            total = int(counts.sum())
            if not total:
                continue
            src = np.repeat(index, counts)
            starts = np.repeat(left - (np.cumsum(counts) - counts), counts)
            dst = order[starts + np.arange(total)]
            keep = src < dst  # each unordered pair once, never a hash with itself
            src, dst = src[keep], dst[keep]
            hit = np.bitwise_count(arr[src] ^ arr[dst]) <= max_distance
            hit &= id_arr[src] != id_arr[dst]
            if hit.any():
                found.append(np.stack([id_arr[src[hit]], id_arr[dst[hit]]], axis=1))
    if not found:
        return []
    pairs = np.unique(np.sort(np.concatenate(found), axis=1), axis=0)
    return [(int(a), int(b)) for a, b in pairs]


def hamming(a: int, b: int) -> int:
    return int((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()
