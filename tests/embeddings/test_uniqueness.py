"""Uniqueness per face (mean distance to its k nearest faces), stored by the map task on the
`embed` queue together with the map; sortable in the grid, shown on the face panel; the map's
API (state, points, colours, saved selections) and its errors."""

import time

import numpy as np
import pytest
from django.urls import reverse

from embeddings import maps, uniqueness
from embeddings.models import DatasetMap, FaceSelection, FaceUniqueness
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces, version_with_predictions


def test_scores_are_the_mean_distance_to_the_k_nearest(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(57, 128)).astype(np.float32)
    # Small chunks so the row blocks' edges are crossed several times.
    monkeypatch.setattr(uniqueness, "CHUNK", 57 * 10)
    got = uniqueness.uniqueness_scores(x, k=5)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    want = np.sort(d, axis=1)[:, :5].mean(axis=1)
    assert np.allclose(got, want, atol=1e-4)


def test_a_face_with_a_near_copy_is_typical_and_a_lone_one_unique():
    x = far_apart_vectors(20, seed=4)
    x = np.vstack([x, x[0] + 0.001])  # a near-copy of face 0
    scores = uniqueness.uniqueness_scores(x, k=1)
    assert scores[0] < 0.02 and scores[20] < 0.02  # 0.001 on each of 128 axes: 0.011 apart
    assert scores[1:20].min() > 1.0
    assert uniqueness.uniqueness_scores(x[:1]).tolist() == [0.0]
    assert uniqueness.uniqueness_scores(x[:3], k=8).shape == (3,)  # fewer faces than k


def _wait_map(dataset, *, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = DatasetMap.objects.filter(dataset=dataset).first()
        if row and row.status in (DatasetMap.SUCCEEDED, DatasetMap.FAILED) and row.stamp == row.target_stamp:
            return row
        time.sleep(0.5)
    raise AssertionError(f"the map did not finish: {row and (row.status, row.step, row.error)}")


def test_the_embed_worker_computes_map_and_scores_once_per_descriptor_set(start_worker, dataset, alice_client):
    faces = make_faces(dataset, 24, labels=["female", "male"])
    vectors = far_apart_vectors(24, seed=5)
    vectors[1] = vectors[0] + 0.01  # faces 0 and 1: near-copies, the most typical
    descriptors_store(faces, vectors=vectors)
    start_worker(queues="embed", concurrency=1)

    maps.derived_request(dataset_id=dataset.pk)
    row = _wait_map(dataset)
    assert row.status == DatasetMap.SUCCEEDED, row.error
    assert row.points == 24 and row.method == "pca30-tsne" and row.seconds is not None
    ids, xy = maps.map_points(dataset=dataset)
    assert sorted(ids.tolist()) == sorted(f.pk for f in faces) and xy.shape == (24, 2)
    scores = dict(FaceUniqueness.objects.filter(dataset=dataset).values_list("face_id", "score"))
    assert len(scores) == 24
    typical = sorted(scores, key=scores.get)[:2]
    assert set(typical) == {faces[0].pk, faces[1].pk}

    # The same descriptors: nothing is queued again.
    assert maps.derived_request(dataset_id=dataset.pk).status == DatasetMap.SUCCEEDED
    # New descriptors: the map is computed again.
    more = make_faces(dataset, 3, start=24)
    descriptors_store(more, seed=6)
    assert maps.derived_request(dataset_id=dataset.pk).status == DatasetMap.QUEUED
    assert _wait_map(dataset).points == 27

    # The grid sorts by it (most typical first / most unique first) and the panel shows it.
    grid = reverse("labeling:grid", args=[dataset.pk])
    page = alice_client.get(grid, {"sort": "uniqueness", "per_page": 60})
    order = [t["id"] for t in page.context["faces"]]
    assert set(order[:2]) == {faces[0].pk, faces[1].pk}
    page = alice_client.get(grid, {"sort": "-uniqueness", "per_page": 60})
    assert set(t["id"] for t in page.context["faces"][-2:]) == {faces[0].pk, faces[1].pk}
    panel = alice_client.get(reverse("labeling:face_detail", args=[dataset.pk, faces[0].pk]))
    assert f"{scores[faces[0].pk]:.3f}" in panel.content.decode()
    assert 'id="more-like-this"' in panel.content.decode()


@pytest.mark.django_db
def test_the_map_api_says_there_is_nothing_yet_and_who_may_see_it(dataset, alice_client, charlie_client):
    make_faces(dataset, 3)
    url = reverse("labeling-api-map", args=[dataset.pk])
    body = alice_client.get(url, {"points": "1"}).json()
    assert body["state"]["status"] == "none" and body["faces"] is None
    assert body["state"]["descriptors"] == {"faces": 3, "done": 0, "running": False}
    assert charlie_client.get(url).status_code == 404
    page = alice_client.get(reverse("labeling:map", args=[dataset.pk]))
    assert page.status_code == 200 and b'id="map-canvas"' in page.content
    assert charlie_client.get(reverse("labeling:map", args=[dataset.pk])).status_code == 404


def _stored_map(dataset, faces):
    """A map row as the task leaves it, without running the task."""
    ids = np.array([f.pk for f in faces], dtype=np.int64)
    xy = np.random.default_rng(0).random((len(faces), 2)).astype(np.float32)
    DatasetMap.objects.create(
        dataset=dataset,
        status=DatasetMap.SUCCEEDED,
        stamp=maps.current_stamp(dataset.pk),
        target_stamp=maps.current_stamp(dataset.pk),
        method="pca30-tsne",
        points=len(faces),
        face_ids=ids.tobytes(),
        coords=xy.tobytes(),
    )


@pytest.mark.django_db
def test_points_colours_and_their_errors(dataset, alice_client):
    faces = make_faces(dataset, 6, labels=["female", "male", ""])
    descriptors_store(faces)
    _stored_map(dataset, faces)
    body = alice_client.get(reverse("labeling-api-map", args=[dataset.pk]), {"points": "1"}).json()
    assert body["state"]["current"] is True and body["faces"]["id"] == [f.pk for f in faces]
    assert body["categories"]["label"] == ["female", "male", "unlabelled"]
    assert body["faces"]["label"] == [0, 1, 2, 0, 1, 2]
    assert body["faces"]["crop"][0].endswith(faces[0].crop)

    colours = reverse("labeling-api-map-colours", args=[dataset.pk])
    age = alice_client.get(colours, {"by": "m_race"}).json()
    assert len(age["codes"]) == 6 and age["categories"][-1] == "none"
    wrong = alice_client.get(colours, {"by": "m_nothing"})
    assert wrong.status_code == 400 and "No face of this dataset has the metadata" in wrong.json()["error"]["message"]
    wrong = alice_client.get(colours, {"by": "shoe size"})
    assert wrong.status_code == 400 and "Cannot colour by" in wrong.json()["error"]["message"]
    no_model = alice_client.get(colours, {"by": "prediction"})
    assert no_model.status_code == 400 and no_model.json()["error"]["code"] == "no_active_model"

    version = version_with_predictions(dataset, faces)
    body = alice_client.get(colours, {"by": "disagreement", "model": version.pk}).json()
    # Labels female, male, -, female, male, -; predictions female, male alternating.
    assert [body["categories"][c] for c in body["codes"]] == [
        "agrees",
        "agrees",
        "unlabelled",
        "disagrees",
        "disagrees",
        "unlabelled",
    ]
    wrong = alice_client.get(colours, {"by": "prediction", "model": 999999})
    assert wrong.status_code == 400 and "not a model version of this dataset" in wrong.json()["error"]["message"]


@pytest.mark.django_db
def test_binary_points_and_the_hover_face(dataset, alice_client, charlie_client):
    import json
    import struct

    from curator.models import Face

    faces = make_faces(dataset, 5, labels=["female", "male", ""])
    descriptors_store(faces)
    _stored_map(dataset, faces)
    Face.objects.filter(pk=faces[1].pk).update(is_excluded=True, split="test")
    gone = faces[4].pk
    Face.objects.filter(pk=gone).delete()  # deleted since the map: kept in place, marked
    url = reverse("labeling-api-map-points", args=[dataset.pk])
    response = alice_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    data = response.content
    (length,) = struct.unpack("<I", data[:4])
    header = json.loads(data[4 : 4 + length])
    n = header["n"]
    assert n == 5 and (4 + length) % 8 == 0 and header["categories"]["label"] == ["female", "male", "unlabelled"]
    at = 4 + length
    ids = np.frombuffer(data, dtype="<i8", count=n, offset=at)
    x = np.frombuffer(data, dtype="<f4", count=n, offset=at + 8 * n)
    label = np.frombuffer(data, dtype=np.uint8, count=n, offset=at + 16 * n)
    split = np.frombuffer(data, dtype=np.uint8, count=n, offset=at + 17 * n)
    excluded = np.frombuffer(data, dtype=np.uint8, count=n, offset=at + 18 * n)
    assert len(data) == at + 19 * n
    stored_ids, stored_xy = maps.map_points(dataset=dataset)
    assert ids.tolist() == stored_ids.tolist() and np.array_equal(x, stored_xy[:, 0])
    assert label.tolist()[:4] == [0, 1, 2, 0] and split[1] == 2 and excluded.tolist() == [0, 1, 0, 0, 255]
    face = alice_client.get(reverse("labeling-api-map-face", args=[dataset.pk, faces[0].pk])).json()
    assert face["crop"].endswith(faces[0].crop) and face["label"] == "female"
    assert alice_client.get(reverse("labeling-api-map-face", args=[dataset.pk, gone])).status_code == 404
    assert charlie_client.get(url).status_code == 404


@pytest.mark.django_db
def test_a_saved_selection_opens_in_the_grid(dataset, bob_client, charlie_client):
    faces = make_faces(dataset, 8)
    url = reverse("labeling-api-selections", args=[dataset.pk])
    picked = [faces[1].pk, faces[4].pk, faces[6].pk]
    response = bob_client.post(url, {"face_ids": picked}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert body["count"] == 3 and FaceSelection.objects.get(pk=body["id"]).face_ids == sorted(picked)
    grid = bob_client.get(body["grid_url"])
    assert [t["id"] for t in grid.context["faces"]] == sorted(picked)
    assert "of selection #" in grid.content.decode()

    bad = bob_client.post(url, {"face_ids": [faces[0].pk, 10**9]}, content_type="application/json")
    assert bad.status_code == 400 and "not faces of this dataset" in bad.json()["error"]["message"]
    empty = bob_client.post(url, {"face_ids": []}, content_type="application/json")
    assert empty.status_code == 400 and empty.json()["error"]["fields"]["face_ids"]
    assert charlie_client.post(url, {"face_ids": picked}, content_type="application/json").status_code == 404
    other = bob_client.get(reverse("labeling:grid", args=[dataset.pk]), {"selection": 10**9})
    assert other.status_code == 400 and "is not a selection of this dataset" in other.content.decode()
    by_ids = bob_client.get(reverse("labeling:grid", args=[dataset.pk]), {"ids": f"{faces[2].pk},{faces[3].pk}"})
    assert [t["id"] for t in by_ids.context["faces"]] == [faces[2].pk, faces[3].pk]
    bad_ids = bob_client.get(reverse("labeling:grid", args=[dataset.pk]), {"ids": "1,two"})
    assert bad_ids.status_code == 400 and "ids must be face ids separated by commas" in bad_ids.content.decode()


def test_descriptors_stored_by_the_embed_queue_bring_the_map_and_scores_along(start_worker, dataset):
    from embeddings.services import descriptors_send

    faces = make_faces(dataset, 6)  # real UTKFace crops: real dlib descriptors
    start_worker(queues="embed", concurrency=1)
    descriptors_send(dataset_ids=[dataset.pk], face_ids=[f.pk for f in faces])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not DatasetMap.objects.filter(dataset=dataset).exists():
        time.sleep(0.5)
    row = _wait_map(dataset)
    assert row.status == DatasetMap.SUCCEEDED and row.points == 6
    assert FaceUniqueness.objects.filter(dataset=dataset).count() == 6
