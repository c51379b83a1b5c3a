"""A diverse sample of the least-sure queue: uncertain faces picked greedily so no two shown are
near-duplicates (descriptor distance below DIVERSE_MIN_DISTANCE), least sure first."""

import numpy as np
import pytest
from django.urls import reverse

from embeddings.uniqueness import DIVERSE_MIN_DISTANCE, diverse_pick
from review import selectors
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces, version_with_predictions


def test_near_duplicates_are_skipped_and_priority_kept():
    x = far_apart_vectors(5, seed=1)
    rows = np.vstack([x[0], x[0] + 0.001, x[1], x[1] + 0.002, x[2], x[3], x[4]])
    ids = [10, 11, 12, 13, 14, 15, 16]
    assert diverse_pick(ids, rows, count=10) == [10, 12, 14, 15, 16]
    assert diverse_pick(ids, rows, count=2) == [10, 12]
    # A face without a descriptor (NaN row) is kept on its priority alone.
    rows[1] = np.nan
    assert diverse_pick(ids, rows, count=3) == [10, 11, 12]
    # The threshold: two faces just beyond it are both kept.
    pair = np.vstack([x[0], x[0] + (DIVERSE_MIN_DISTANCE + 0.01) / np.sqrt(128)])
    assert diverse_pick([1, 2], pair, count=2) == [1, 2]


@pytest.mark.django_db
def test_the_least_sure_queue_offers_a_diverse_sample(dataset, alice_client):
    faces = make_faces(dataset, 12)  # unlabelled
    # Least sure first: confidence 0.51, 0.52, ... Faces 0-3 are one person's burst (near-copies).
    version = version_with_predictions(dataset, faces, predict=lambda i, f: ("female", round(0.51 + 0.01 * i, 2)))
    vectors = far_apart_vectors(12, seed=2)
    for i in (1, 2, 3):
        vectors[i] = vectors[0] + 0.002 * i
    descriptors_store(faces[:11], vectors=vectors[:11])  # face 11 has no descriptor yet

    plain = [item.face.pk for item in selectors.active_items(model_version=version, limit=6)]
    assert plain == [f.pk for f in faces[:6]]
    diverse = [item.face.pk for item in selectors.active_items(model_version=version, limit=6, diverse=True)]
    assert diverse == [faces[0].pk, *(f.pk for f in faces[4:9])]
    every = [item.face.pk for item in selectors.active_items(model_version=version, limit=20, diverse=True)]
    assert every == [faces[0].pk, *(f.pk for f in faces[4:12])]  # face 11: no descriptor, still offered

    url = reverse("review:active_queue", args=[dataset.pk, version.pk])
    page = alice_client.get(url, {"diverse": "1"})
    shown = [item.face.pk for item in page.context["items"]]
    assert shown[:2] == [faces[0].pk, faces[4].pk] and faces[1].pk not in shown
    assert 'name="diverse" value="1" checked' in page.content.decode()
    assert faces[1].pk in [item.face.pk for item in alice_client.get(url).context["items"]]
