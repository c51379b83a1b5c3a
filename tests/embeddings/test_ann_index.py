"""The approximate nearest-neighbour index (embeddings.ann) and the approximate pair graph
(embeddings.graph) on small data: recall against brute force, the incremental update, the
round-trip through storage, the selectors answering from it, and groups equal to exact search's."""

import numpy as np
import pytest

from curator.services.datasets import dataset_delete
from embeddings import ann, graph, identities, selectors, services
from embeddings.duplicates import FaceRecord, complete_linkage_groups, pair_evidence
from embeddings.selectors import VectorIndex
from tests.embeddings.factories import descriptors_store
from tests.labeling.factories import make_faces


def people(n_people: int, per: int, *, seed: int = 0, photo: float = 0.25, apart: float = 0.45) -> np.ndarray:
    """Descriptors shaped like bench/million_vectors.py's: people `apart` from a few real-like
    centres, photos `photo` from their person."""
    rng = np.random.default_rng(seed)

    def jitter(x, spread):
        noise = rng.standard_normal(x.shape).astype(np.float32)
        return x + spread * noise / np.linalg.norm(noise, axis=1, keepdims=True)

    centres = rng.normal(size=(20, 128)).astype(np.float32) * 0.06
    persons = jitter(centres[rng.integers(0, 20, n_people)], apart)
    return jitter(np.repeat(persons, per, axis=0), photo).astype(np.float32)


def brute_ids(vectors, ids, query, k):
    return ids[np.argsort(np.linalg.norm(vectors - query, axis=1))[:k]]


def recall_at(index, vectors, ids, queries, k=10) -> float:
    hits = []
    for q in queries:
        got = {f for f, _ in index.query(q, k=k)}
        hits.append(len(got & set(brute_ids(vectors, ids, q, k).tolist())) / k)
    return float(np.mean(hits))


def test_recall_against_brute_force_and_distances():
    vectors = people(600, 5)
    ids = np.arange(10_000, 13_000, dtype=np.int64)
    index = ann.AnnIndex.build(ids, vectors)
    queries = vectors[::37]
    assert recall_at(index, vectors, ids, queries) >= 0.95
    got = index.query(vectors[0], k=5)
    assert got[0] == (10_000, pytest.approx(0.0, abs=1e-3))
    assert [d for _, d in got] == sorted(d for _, d in got)
    exact = np.linalg.norm(vectors - vectors[0], axis=1)
    assert all(d == pytest.approx(exact[f - 10_000], abs=1e-3) for f, d in got)
    assert index.query(vectors[0], k=5, exclude_ids=[10_000])[0][0] != 10_000
    assert len(index.query(vectors[0], k=5, exclude_ids=[10_000])) == 5


def test_incremental_update_matches_a_fresh_build():
    vectors = people(400, 5, seed=1)
    ids = np.arange(1, 2001, dtype=np.int64)
    index = ann.AnnIndex.build(ids[:1500], vectors[:1500], stamp=(1, 1500))
    # 500 faces arrive, 100 are deleted, and 50 get a recomputed descriptor.
    vectors = vectors.copy()
    moved = ids[200:250]
    vectors[200:250] = people(50, 1, seed=9)
    keep = np.ones(2000, dtype=bool)
    keep[1000:1100] = False
    changed = index.sync(ids[keep], vectors[keep], stamp=(2, 1900))
    assert changed == 500 + 100 + 50
    assert index.stamp == (2, 1900) and len(index) == 1900
    assert index.keys.tolist() == ids[keep].tolist()
    assert index.sync(ids[keep], vectors[keep], stamp=(3, 1900)) == 0
    queries = vectors[keep][::29]
    assert recall_at(index, vectors[keep], ids[keep], queries) >= 0.95
    for face_id in moved[:5]:  # found where its new vector is, not at the old place
        assert index.query(vectors[face_id - 1], k=1)[0] == (face_id, pytest.approx(0.0, abs=1e-3))
    gone = set(ids[1000:1100].tolist())
    assert not any(f in gone for q in queries for f, _ in index.query(q, k=20))


def test_storage_round_trip_and_small_datasets_stay_exact(media_root):
    vectors = people(100, 5, seed=2)
    ids = np.arange(1, 501, dtype=np.int64)
    index = ann.AnnIndex.build(ids, vectors, stamp=(7, 500))
    ann.ann_save(42, index)
    assert (media_root / ann.storage_name(42)).exists()
    loaded = ann.ann_load(42)
    assert loaded.stamp == (7, 500) and loaded.keys.tolist() == ids.tolist()
    assert [f for f, _ in loaded.query(vectors[3], k=8)] == [f for f, _ in index.query(vectors[3], k=8)]
    ann.ann_save(42, ann.AnnIndex.build(ids[:10], vectors[:10], stamp=(8, 10)))  # replaced, not renamed
    assert ann.ann_load(42).stamp == (8, 10)
    ann.ann_delete(42)
    assert ann.ann_load(42) is None
    # Below ANN_MIN_FACES: no index, brute force answers.
    assert ann.dataset_ann(42, ids, vectors, (7, 500)) is None


def test_selectors_answer_from_the_stored_index_and_follow_new_descriptors(dataset, monkeypatch):
    monkeypatch.setattr(ann, "ANN_MIN_FACES", 50)
    ann._cache.clear()
    faces = make_faces(dataset, 120)
    vectors = people(30, 4, seed=3)
    descriptors_store(faces[:100], vectors=vectors[:100])
    # No stored index yet: brute force answers (exact), nothing is built in the request.
    assert selectors.face_neighbours(face=faces[0], k=3)[0][0] in {f.pk for f in faces[1:4]}
    assert ann.ann_load(dataset.pk) is None
    # The embed worker builds and stores it after the dataset's last batch.
    assert services.ann_update(dataset_id=dataset.pk) == 100
    stored = ann.ann_load(dataset.pk)
    assert len(stored) == 100 and stored.stamp == selectors.dataset_index(dataset.pk).stamp
    ann._cache.clear()  # another process: loads the stored file
    index = selectors.dataset_index(dataset.pk)
    assert ann.dataset_ann(dataset.pk, index.ids, index.vectors, index.stamp) is not None
    exact = index.query(vectors[0], k=5, exclude_ids=[faces[0].pk])
    assert selectors.face_neighbours(face=faces[0], k=5) == [(f, pytest.approx(d, abs=1e-4)) for f, d in exact]
    # New descriptors: a web process applies the small difference itself...
    descriptors_store(faces[100:], vectors=people(5, 4, seed=4))
    index = selectors.dataset_index(dataset.pk)
    live = ann.dataset_ann(dataset.pk, index.ids, index.vectors, index.stamp)
    assert live is not None and len(live) == 120 and live.stamp == index.stamp
    assert selectors.face_neighbours(face=faces[110], k=1)[0][0] in {f.pk for f in faces[100:]}
    # ...and the worker stores the update for the other hosts (only the 20 new faces).
    ann._cache.clear()
    assert services.ann_update(dataset_id=dataset.pk) == 20
    assert len(ann.ann_load(dataset.pk)) == 120
    # The index lives under the dataset's folder: deleting the dataset deletes it.
    dataset_id = dataset.pk
    dataset_delete(dataset=dataset)
    assert ann.ann_load(dataset_id) is None


def test_approximate_pairs_and_groups_equal_exact_ones():
    vectors = people(300, 6, seed=5)
    exact = graph.close_pairs(vectors, 0.5, k=30, exact=True)
    approximate = graph.close_pairs(vectors, 0.5, k=30, exact=False)
    as_set = lambda pairs: {(int(i), int(j)) for i, j, _ in pairs}  # noqa: E731
    assert len(as_set(exact) ^ as_set(approximate)) <= 0.005 * len(exact)
    assert len(graph.close_pairs(vectors, 0.5, exact=False)) > 0


def test_identity_clusters_and_duplicate_groups_on_the_graph_equal_exact(monkeypatch):
    vectors = people(200, 6, seed=6)
    copies = vectors[::7] + 0.01
    all_vectors = np.concatenate([vectors, copies])
    exact = identities.cluster_labels(all_vectors)
    monkeypatch.setattr(graph, "EXACT_MAX", 0)
    approximate = identities.cluster_labels(all_vectors)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(exact, approximate) >= 0.99
    records = [FaceRecord(i, i, f"sha{i}", v) for i, v in enumerate(all_vectors)]
    with_graph = complete_linkage_groups(pair_evidence(records))
    monkeypatch.setattr(graph, "EXACT_MAX", 10**9)
    assert complete_linkage_groups(pair_evidence(records)) == with_graph
    assert len(with_graph) == len(copies)


def test_vector_index_carries_the_stamp():
    assert VectorIndex(np.zeros(0, dtype=np.int64), np.zeros((0, 128), np.float32), stamp=(1, 2)).stamp == (1, 2)
