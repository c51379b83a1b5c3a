"""More like this: the grid's `similar_to` filter (nearest faces by descriptor, `sort=distance`
nearest first, the distance on each tile) and the API's similar faces, with their errors."""

import numpy as np
import pytest
from django.urls import reverse

from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces, version_with_predictions


@pytest.fixture
def faces(dataset):
    """10 faces; faces 1, 2, 3 are at 0.1, 0.2, 0.3 from face 0, the others far from all."""
    faces = make_faces(dataset, 10, labels=["female", "male"])
    vectors = far_apart_vectors(10, seed=7)
    step = np.zeros(128, dtype=np.float32)
    step[0] = 0.1
    for i in (1, 2, 3):
        vectors[i] = vectors[0] + i * step
    descriptors_store(faces[:9], vectors=vectors[:9])  # face 9: no descriptor yet
    return faces


@pytest.mark.django_db
def test_the_grid_shows_the_nearest_faces_nearest_first_with_distances(dataset, faces, bob_client):
    grid = reverse("labeling:grid", args=[dataset.pk])
    page = bob_client.get(grid, {"similar_to": faces[0].pk, "sort": "distance"})
    assert page.status_code == 200
    tiles = page.context["faces"]
    # Issue 20: the face asked about is shown, first, at distance 0 (it used to be left out).
    assert [t["id"] for t in tiles[:4]] == [faces[0].pk, faces[1].pk, faces[2].pk, faces[3].pk]
    assert [t["distance"] for t in tiles[:4]] == ["0.000", "0.100", "0.200", "0.300"]
    assert len(tiles) == 9
    assert "most like face" in page.content.decode() and "distance 0.100" in page.content.decode()
    # Face 9 has no descriptor yet: the grid says the search is not over the whole dataset.
    assert "searched among the 9 of 10 faces that have a descriptor so far" in page.content.decode()
    # Other filters still apply, and the farthest first works too.
    males = bob_client.get(grid, {"similar_to": faces[0].pk, "sort": "-distance", "label": "male"})
    ids = [t["id"] for t in males.context["faces"]]
    assert faces[3].pk in ids and faces[1].pk in ids and faces[2].pk not in ids
    assert ids.index(faces[3].pk) < ids.index(faces[1].pk)


@pytest.mark.django_db
def test_similar_to_works_with_the_prediction_filters(dataset, faces, bob_client):
    version = version_with_predictions(dataset, faces, predict=lambda i, f: ("male" if i in (2, 5) else "female", 0.9))
    query = {"similar_to": faces[0].pk, "sort": "distance", "predicted": "male", "model": version.pk}
    page = bob_client.get(reverse("labeling:grid", args=[dataset.pk]), query)
    assert [t["id"] for t in page.context["faces"]] == [faces[2].pk, faces[5].pk]  # face 0 is predicted female


@pytest.mark.django_db
def test_errors_say_what_is_wrong(dataset, faces, bob_client):
    grid = reverse("labeling:grid", args=[dataset.pk])
    missing = bob_client.get(grid, {"similar_to": faces[9].pk})
    assert missing.status_code == 400 and "with a descriptor yet" in missing.content.decode()
    alone = bob_client.get(grid, {"sort": "distance"})
    assert alone.status_code == 400 and "Sorting by distance needs a face" in alone.content.decode()
    word = bob_client.get(grid, {"similar_to": "abc"})
    assert word.status_code == 400 and "is not a number" in word.content.decode()


@pytest.mark.django_db
def test_the_api_answers_the_nearest_faces(dataset, faces, bob_client, charlie_client):
    url = reverse("labeling-api-face-similar", args=[dataset.pk, faces[0].pk])
    body = bob_client.get(url, {"k": 2}).json()
    assert [(s["id"], s["distance"]) for s in body["similar"]] == [(faces[1].pk, 0.1), (faces[2].pk, 0.2)]
    assert body["similar"][0]["crop_url"].endswith(faces[1].crop)
    assert bob_client.get(url, {"k": 0}).json()["error"]["fields"]["k"]
    none = bob_client.get(reverse("labeling-api-face-similar", args=[dataset.pk, faces[9].pk]))
    assert none.status_code == 409 and none.json()["error"]["code"] == "no_descriptor"
    assert charlie_client.get(url).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_descriptor_stamp_reads_one_row_and_follows_new_descriptors_and_deleted_faces(dataset, faces, bob_client):
    """The descriptor stamp is one row (DescriptorSet.stamp), read once per GET
    (embeddings.middleware). It used to add a count of the dataset's faces: ~180 ms of every "more
    like this" at a million faces. Removing faces bumps it instead, so the next page drops them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from embeddings.models import DescriptorSet

    grid = reverse("labeling:grid", args=[dataset.pk])
    with CaptureQueriesContext(connection) as queries:
        page = bob_client.get(grid, {"similar_to": faces[0].pk, "sort": "distance"})
    assert page.status_code == 200
    stamp_reads = [q["sql"] for q in queries if q["sql"].startswith('SELECT "embeddings_descriptorset"."stamp" AS')]
    assert len(stamp_reads) == 1, stamp_reads

    descriptors_store(faces[9:], vectors=far_apart_vectors(1, seed=3))
    again = bob_client.get(grid, {"similar_to": faces[0].pk, "sort": "distance"})
    assert len(again.context["faces"]) == 10
    assert "searched among" not in again.content.decode()

    stamp = DescriptorSet.objects.get(dataset=dataset).stamp
    faces[1].delete()  # as the admin deletes a face: one bump once it commits
    assert DescriptorSet.objects.get(dataset=dataset).stamp == stamp + 1
    after = bob_client.get(grid, {"similar_to": faces[0].pk, "sort": "distance"})
    assert [t["id"] for t in after.context["faces"][:2]] == [faces[0].pk, faces[2].pk]
