"""The model follows the data (issue 20): faces aligned into a dataset with an active version
get that version's predictions (and so its suggestions) on the `predict` queue once their
descriptors are computed, with no button; the dataset page says "computing" meanwhile."""

import time

import pytest
from django.db import transaction

from curator.models import Face
from curator.signals import faces_aligned
from embeddings.models import DescriptorSet
from review import selectors as queues
from tests.training.predict_support import labelled_faces
from training.models import ModelVersion, Prediction


def pretrained_version(dataset, *, active: bool = True) -> ModelVersion:
    """dlib-models' gender network as a version: no training, so the test is about following."""
    return ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="pretrained", artifact="", classes=["female", "male"], is_active=active
    )


@pytest.mark.worker
def test_aligned_faces_get_the_active_versions_predictions_and_suggestions(dataset, start_worker):
    faces = labelled_faces(dataset)
    new = faces[:8]
    Face.objects.filter(pk__in=[f.pk for f in new[:5]]).update(label="")  # new faces come unlabelled
    version = pretrained_version(dataset)
    start_worker(queues="embed,predict", concurrency=1)

    with transaction.atomic():  # as an alignment chunk sends it
        faces_aligned.send(sender=Face, dataset_ids={dataset.pk}, face_ids=[f.pk for f in new])

    deadline = time.monotonic() + 180
    while Prediction.objects.filter(model_version=version).count() < len(new):
        assert time.monotonic() < deadline, "the new faces were not predicted in time"
        time.sleep(0.5)
    assert set(Prediction.objects.filter(model_version=version).values_list("face_id", flat=True)) == {
        f.pk for f in new
    }
    deadline = time.monotonic() + 30
    while ModelVersion.objects.get(pk=version.pk).predictions_pending:
        assert time.monotonic() < deadline, "the pending count did not come back to 0"
        time.sleep(0.2)
    # The unlabelled ones are suggestions now.
    assert {p.face_id for p in queues.suggestions_queue(model_version=version)} == {f.pk for f in new[:5]}


def test_only_the_active_version_follows(dataset, django_capture_on_commit_callbacks):
    from training.services import predictions_follow_queue

    faces = labelled_faces(dataset)[:3]
    pretrained_version(dataset, active=False)
    with django_capture_on_commit_callbacks() as queued:
        assert predictions_follow_queue(dataset_ids=[dataset.pk], face_ids=[f.pk for f in faces]) == 0
    assert queued == []


def test_the_dataset_page_says_computing_while_new_faces_are_predicted(alice_client, dataset):
    faces = labelled_faces(dataset)
    url = f"/training/datasets/{dataset.pk}/predictions/"
    assert "No active model" in alice_client.get(url).content.decode()
    version = pretrained_version(dataset)
    ModelVersion.objects.filter(pk=version.pk).update(predictions_pending=1)
    body = alice_client.get(url).content.decode()
    assert 'id="predictions-computing"' in body and 'hx-trigger="every 2s"' in body
    assert f'predictions for <b id="predictions-done">0</b> of {len(faces)} faces' in body
    # Descriptors still being computed count as computing too: their predictions come next.
    ModelVersion.objects.filter(pk=version.pk).update(predictions_pending=0)
    DescriptorSet.objects.update_or_create(dataset=dataset, defaults={"batches_pending": 1})
    assert 'id="predictions-computing"' in alice_client.get(url).content.decode()
    DescriptorSet.objects.filter(dataset=dataset).update(batches_pending=0)
    body = alice_client.get(url).content.decode()
    assert "predictions-computing" not in body and "every 2s" not in body
    assert f"{len(faces)} without a prediction" in body
