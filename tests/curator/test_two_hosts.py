"""Two hosts, no shared disk: two worker pools, each with its own empty working directory as
MEDIA_ROOT, share only PostgreSQL, Redis and an S3-compatible object store (a real moto server).
A dataset is aligned across both, a model is trained on one, predictions are computed on the
other and a new photo is classified by the web process (this test): every file is reachable from
every host and nothing lands on a local disk."""

import time

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from curator.models import AlignmentJob, Face, SourceImage
from curator.services.alignment import alignment_job_start
from tests.curator.test_align_tasks import assert_every_image_accounted_for, import_fixture_faces, wait_for
from tests.training.predict_support import lfw_photo
from training import services as training_services
from training.models import JobStatus, ModelVersion, Prediction, TrainingJob

pytestmark = [pytest.mark.worker, pytest.mark.slow]


def local_files(root) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file()]


def until(predicate, timeout: float, what: str, *workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    logs = "\n".join(w.output()[-3000:] for w in workers)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_align_train_and_predict_across_two_hosts_without_a_shared_disk(
    s3_storage, start_worker, tmp_path, dataset, alice, alice_client, media_root
):
    disk_a, disk_b = tmp_path / "host-a", tmp_path / "host-b"
    disk_a.mkdir()
    disk_b.mkdir()
    host_a = start_worker(queues="align,train", concurrency=1, MEDIA_ROOT=str(disk_a), **s3_storage.env)
    host_b = start_worker(queues="align,predict", concurrency=1, MEDIA_ROOT=str(disk_b), **s3_storage.env)

    import_fixture_faces(dataset)  # the web process stores the originals in the bucket
    job = alignment_job_start(dataset=dataset, images=SourceImage.objects.filter(dataset=dataset))
    job = wait_for(job, lambda j: j.status in ("done", "failed"), timeout=240, worker=host_a)
    assert_every_image_accounted_for(job)
    assert AlignmentJob.objects.get(pk=job.pk).faces >= 35
    # Both hosts aligned part of the dataset.
    assert "align_chunk" in host_a.output() and "align_chunk" in host_b.output()

    response = alice_client.post(
        reverse("api-training-jobs"),
        {"dataset": dataset.pk, "architecture": "embedding", "config": {"head": "linear"}},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    training = until(
        lambda: TrainingJob.objects.filter(
            pk=response.json()["id"], status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
        ).first(),
        300,
        "the training job on host A",
        host_a,
    )
    assert training.status == JobStatus.SUCCEEDED, training.error
    version = ModelVersion.objects.get(job=training)
    training_services.model_version_activate(model_version=version)
    until(lambda: Prediction.objects.filter(model_version=version).exists(), 180, "predictions on host B", host_b)

    bucket_keys = set(s3_storage.server.keys(s3_storage.bucket))
    assert {face.crop for face in Face.objects.filter(dataset=dataset)} <= bucket_keys
    assert version.artifact in bucket_keys and version.snapshot in bucket_keys
    # Nothing was written to any host's own disk.
    assert local_files(disk_a) == local_files(disk_b) == local_files(media_root) == []

    token = Token.objects.create(user=alice).key
    predicted = alice_client.post(
        "/api/v1/predict",
        data=lfw_photo("female").read_bytes(),
        content_type="image/jpeg",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert predicted.status_code == 200, predicted.content
    body = predicted.json()
    assert body["model_version"]["id"] == version.pk
    assert body["faces"] and body["faces"][0]["label"] in ("female", "male")
