"""The nearest-neighbour index over a dataset's descriptors: exact answers, the flip-averaged
vector, stale and excluded faces, the cache following the descriptor stamp, and its speed."""

import time

import numpy as np

from curator.models import Face
from embeddings import selectors
from embeddings.models import FaceDescriptor
from embeddings.selectors import VectorIndex
from tests.embeddings.factories import descriptors_store, far_apart_vectors, near
from tests.labeling.factories import make_faces


def test_index_matches_brute_force_and_skips_excluded_ids():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 128)).astype(np.float32)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = VectorIndex(ids, vectors)
    query = rng.normal(size=128).astype(np.float32)
    brute = np.linalg.norm(vectors - query, axis=1)
    order = np.argsort(brute)[:10]
    got = index.query(query, k=10)
    assert [f for f, _ in got] == ids[order].tolist()
    assert np.allclose([d for _, d in got], brute[order], atol=1e-3)
    skipped = index.query(query, k=10, exclude_ids=[int(ids[order[0]])])
    assert skipped[0][0] == ids[order[1]] and len(skipped) == 10
    assert index.query(query, k=0) == [] and VectorIndex(ids[:0], vectors[:0]).query(query, k=5) == []
    assert len(index.query(query, k=9999)) == 500


def test_dataset_vectors_neighbours_and_progress(dataset, bob):
    faces = make_faces(dataset, 6, labels=["female", "male"])
    vectors = far_apart_vectors(6)
    vectors[1] = near(vectors[0], 0.01)  # face 1 is nearly face 0
    descriptors_store(faces[:5], vectors=vectors[:5])  # face 5 has no descriptor yet
    ids, got = selectors.dataset_vectors(dataset=dataset)
    assert ids.dtype == np.int64 and got.dtype == np.float32 and got.shape == (5, 128)
    assert ids.tolist() == [f.pk for f in faces[:5]]
    nearest = selectors.face_neighbours(face=faces[0], k=3)
    assert nearest[0][0] == faces[1].pk and nearest[0][1] < 0.05 and len(nearest) == 3
    assert [d for _, d in nearest] == sorted(d for _, d in nearest)
    assert (
        selectors.faces_nearest(dataset=dataset, vector=vectors[0], k=2, exclude_ids=[faces[0].pk])[0][0] == faces[1].pk
    )
    assert selectors.face_neighbours(face=faces[5]) == []
    assert selectors.descriptor_progress(dataset=dataset) == {"faces": 6, "done": 5, "running": False}
    # Excluded faces are left out on request; a stale row (the face moved) is not current.
    Face.objects.filter(pk=faces[2].pk).update(is_excluded=True)
    assert faces[2].pk not in selectors.dataset_vectors(dataset=dataset, include_excluded=False)[0]
    assert selectors.dataset_vectors(dataset=dataset, face_ids=[faces[3].pk])[0].tolist() == [faces[3].pk]
    Face.objects.filter(pk=faces[4].pk).update(box_left=7)
    FaceDescriptor.objects.filter(face=faces[0]).update(source="elsewhere#0,0,1,1")
    descriptors_store([faces[5]], vectors=vectors[5:])  # bumps the stamp: the cached index is rebuilt
    ids, _ = selectors.dataset_vectors(dataset=dataset)
    assert faces[5].pk in ids and faces[4].pk not in ids and faces[0].pk not in ids


def test_progress_counts_the_faces_once_per_stamp_and_again_when_faces_arrive(
    dataset, django_capture_on_commit_callbacks
):
    """A "more like this" grid asks for the progress on every click: the dataset's faces are
    counted once per descriptor stamp (150 ms at a million faces), and alignment bumps the stamp."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from curator.signals import faces_aligned

    faces = make_faces(dataset, 4)
    descriptors_store(faces[:2], vectors=far_apart_vectors(2))
    assert selectors.descriptor_progress(dataset=dataset) == {"faces": 4, "done": 2, "running": False}
    with CaptureQueriesContext(connection) as queries:
        assert selectors.descriptor_progress(dataset=dataset)["faces"] == 4
    assert not [q for q in queries if q["sql"].startswith('SELECT COUNT(*) AS "__count" FROM "curator_face"')]

    new = make_faces(dataset, 1, start=4)  # what alignment stores, then announces once it commits
    with django_capture_on_commit_callbacks(execute=True):
        faces_aligned.send(sender=Face, dataset_ids={dataset.pk}, face_ids=[new[0].pk])
    assert selectors.descriptor_progress(dataset=dataset)["faces"] == 5


def test_the_flip_averaged_vector_is_used(dataset):
    faces = make_faces(dataset, 1)
    descriptors_store(faces, vectors=far_apart_vectors(1))
    a, b = np.ones(128, np.float32), np.zeros(128, np.float32)
    FaceDescriptor.objects.filter(face=faces[0]).update(vector=a.tobytes(), vector_flipped=b.tobytes())
    from embeddings.descriptors import descriptor_stamp_bump

    descriptor_stamp_bump(dataset_ids=[dataset.pk])
    assert np.allclose(selectors.dataset_vectors(dataset=dataset)[1][0], 0.5)


def test_knn_over_100k_vectors_is_fast():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, 128)).astype(np.float32) * 0.06
    vectors = (centres[rng.integers(0, 1000, 100_000)] + rng.normal(size=(100_000, 128)) * 0.03).astype(np.float32)
    index = VectorIndex(np.arange(100_000, dtype=np.int64), vectors)
    times = []
    for q in vectors[:15]:
        t = time.perf_counter()
        index.query(q, k=20)
        times.append(time.perf_counter() - t)
    # 50 ms is the goal (bench/embeddings.py measures ~10 ms); generous here, the machine is shared.
    assert np.median(times) < 0.2
