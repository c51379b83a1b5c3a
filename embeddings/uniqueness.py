"""Uniqueness and diversity over face descriptors (pure numpy, no database here except
`uniqueness_store`).

- uniqueness of a face: the mean distance to its K nearest neighbours in its dataset. High: an
  unusual face (a rare pose, age or look, or a wrong crop); low: a typical one; near 0: it has a
  near-copy. Stored per face (FaceUniqueness) by the map task, for the grid's sorts.
- a diverse pick: from faces in order of priority (e.g. least sure first), greedily keep a face
  only if it is at least `min_distance` from every face kept, so a review queue shows no two
  near-duplicates or two photos of one person from one shoot.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from embeddings.models import FaceUniqueness

K = 8
# Rows of the distance matrix computed at once: 1024 x 100,000 float32 is 400 MB; this is 40 MB.
CHUNK = 1024 * 10_000
# Faces closer than this are the same person in a similar shot (dlib: < 0.6 is the same person).
DIVERSE_MIN_DISTANCE = 0.5


def uniqueness_scores(vectors: np.ndarray, *, k: int = K) -> np.ndarray:
    """Mean Euclidean distance of each row to its k nearest other rows (float32 [n]); with fewer
    than k other rows, to all of them; 0 for a lone row."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if n <= 1:
        return np.zeros(n, dtype=np.float32)
    k = min(k, n - 1)
    from embeddings import graph

    if n > graph.EXACT_MAX:
        return _approximate_scores(x, k)
    norms = np.einsum("ij,ij->i", x, x)
    out = np.empty(n, dtype=np.float32)
    step = max(1, CHUNK // n)
    for start in range(0, n, step):
        block = x[start : start + step]
        squared = norms[start : start + step, None] - 2 * (block @ x.T) + norms[None, :]
        rows = np.arange(len(block))
        squared[rows, start + rows] = np.inf  # a face is not its own neighbour
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        out[start : start + step] = np.sqrt(np.maximum(nearest, 0)).mean(axis=1)
    return out


def _approximate_scores(x: np.ndarray, k: int) -> np.ndarray:
    """uniqueness_scores from the approximate k-nearest graph (embeddings.graph.nearest_graph,
    shared with identities and duplicates): the brute-force matrix of a million faces would take
    hours, the graph minutes."""
    from embeddings.graph import nearest_graph

    n = len(x)
    keys, d2 = nearest_graph(x, k + 1)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, 100_000):
        block_keys, block_d2 = keys[start : start + 100_000, : k + 1], d2[start : start + 100_000, : k + 1]
        rows = np.arange(start, start + len(block_keys))[:, None]
        block_d2 = np.where(block_keys == rows, np.inf, block_d2)  # a face is not its own neighbour
        nearest = np.sort(block_d2, axis=1)[:, :k]
        out[start : start + len(block_keys)] = np.sqrt(np.maximum(nearest, 0)).mean(axis=1)
    return out


def uniqueness_store(*, dataset, ids: np.ndarray, scores: np.ndarray) -> int:
    """Replace the dataset's uniqueness scores with these (faces left out have none)."""
    rows = [
        FaceUniqueness(face_id=int(face_id), dataset=dataset, score=float(score))
        for face_id, score in zip(ids, scores, strict=True)
    ]
    with transaction.atomic():
        FaceUniqueness.objects.filter(dataset=dataset).delete()
        FaceUniqueness.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def diverse_pick(ids, vectors: np.ndarray, *, count: int, min_distance: float = DIVERSE_MIN_DISTANCE) -> list[int]:
    """Up to `count` of `ids` (in their given order of priority) such that no two picked are
    closer than `min_distance`. `vectors[i]` is the descriptor of `ids[i]`, or a row of NaN when
    that face has none (it is picked on priority alone: nothing says it is a near-copy)."""
    x = np.asarray(vectors, dtype=np.float32)
    picked: list[int] = []
    kept = np.zeros((0, x.shape[1] if x.ndim == 2 else 128), dtype=np.float32)
    for face_id, v in zip(ids, x, strict=True):
        if len(picked) >= count:
            break
        if np.isnan(v).any():
            picked.append(int(face_id))
            continue
        if len(kept) and float(np.sqrt(((kept - v) ** 2).sum(axis=1)).min()) < min_distance:
            continue
        picked.append(int(face_id))
        kept = np.vstack([kept, v[None, :]])
    return picked
