"""Recomputing a version's predictions on the `predict` queue, e.g. after new photos were
aligned: a real worker stores one prediction per face; only curators may ask."""

import time

import pytest

from curator.models import Face
from tests.training.predict_support import embedding_version, labelled_faces
from training.models import Prediction


@pytest.mark.worker
def test_a_predict_worker_predicts_every_face_again(alice_client, dataset, alice, start_worker):
    labelled_faces(dataset)
    version = embedding_version(dataset, alice, predictions=False)
    start_worker(queues="predict", concurrency=1)

    response = alice_client.post(f"/training/versions/{version.pk}/predict/")

    assert response.status_code == 302
    deadline = time.monotonic() + 120
    while Prediction.objects.filter(model_version=version).count() < Face.objects.filter(dataset=dataset).count():
        assert time.monotonic() < deadline, "the predict worker did not finish in time"
        time.sleep(0.5)
    assert Prediction.objects.filter(model_version=version).count() == 41


def test_annotators_and_outsiders_may_not_recompute(
    bob_client, charlie_client, dataset, alice, django_capture_on_commit_callbacks
):
    labelled_faces(dataset)
    version = embedding_version(dataset, alice, predictions=False)
    before = Prediction.objects.filter(model_version=version).count()
    with django_capture_on_commit_callbacks() as queued:
        assert bob_client.post(f"/training/versions/{version.pk}/predict/").status_code == 403
        assert charlie_client.post(f"/training/versions/{version.pk}/predict/").status_code == 404
    assert queued == []
    assert Prediction.objects.filter(model_version=version).count() == before
