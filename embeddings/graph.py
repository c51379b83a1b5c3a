"""Pairs of close vectors and of close 64-bit hashes, for near-duplicates and identity clusters.
Pure numpy (no database), so benchmarks and tests call it on any vectors."""

from __future__ import annotations

from itertools import combinations

import numpy as np

# Rows per block of the distance matrix: a block of 512 rows against 100,000 vectors is 200 MB of
# float32, so memory stays bounded whatever the dataset's size.
BLOCK = 512


def close_pairs(vectors: np.ndarray, radius: float, *, k: int | None = None) -> np.ndarray:
    """[m, 3] rows (i, j, distance) with i < j of the vectors closer than `radius` (Euclidean);
    with `k`, only each vector's k nearest within the radius (bounds the edges of a big set)."""
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
