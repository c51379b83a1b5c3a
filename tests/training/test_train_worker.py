"""Training through a real Celery worker on the `train` queue: jobs run one at a time in order,
a cancel stops a running job within seconds and keeps its best epoch, and a job whose worker is
killed is marked failed by the stale-job sweep."""

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from curator.services.jobs import jobs_sweep_stale
from tests.celery_worker import wait_until
from training import services
from training.models import JobStatus, ModelVersion, Prediction, TrainingJob

pytestmark = [pytest.mark.worker, pytest.mark.slow]

LONG = {"epochs": "300", "batch_size": "4", "input_size": "40", "patience": "100"}


def job(pk: int) -> TrainingJob:
    return TrainingJob.objects.get(pk=pk)


def test_jobs_run_in_order_and_cancel_keeps_the_best_epoch(start_worker, alice_client, dataset, training_faces):
    worker = start_worker(queues="train", concurrency=1)
    response = alice_client.post(
        reverse("training:job_create", args=[dataset.pk]),
        {"architecture": "seed-cnn", "keep_best_on_cancel": "on", **LONG},
    )
    assert response.status_code == 302
    first = TrainingJob.objects.get()
    response = alice_client.post(
        reverse("api-training-jobs"),
        {"dataset": dataset.pk, "architecture": "embedding", "config": {"epochs": 2}},
        content_type="application/json",
    )
    assert response.status_code == 201
    second = response.json()["id"]

    wait_until(lambda: len(job(first.pk).history) >= 2, 180, "two epochs of the first job", worker)
    progress = alice_client.get(reverse("training:job_progress", args=[first.pk])).json()
    assert progress["status"] == "running" and progress["phase"] == "training"
    assert progress["epoch"] >= 2 and progress["batches_per_epoch"] == 8
    assert job(second).status == JobStatus.QUEUED  # one train worker: the second waits its turn

    alice_client.post(reverse("training:job_cancel", args=[first.pk]), {"keep_best": "1"})
    asked = time.monotonic()
    wait_until(lambda: job(first.pk).phase != "training", 10, "training to stop after the cancel", worker)
    assert time.monotonic() - asked < 5
    first = wait_until(
        lambda: (j := job(first.pk)).status == JobStatus.CANCELLED and j, 60, "the cancelled job to finish", worker
    )
    assert "Training stopped (cancelled)" in first.log
    kept = ModelVersion.objects.get(job=first)
    assert kept.metrics["stopped"] == "cancelled" and kept.metrics["best_epoch"] >= 1
    assert Prediction.objects.filter(model_version=kept).count() == len(training_faces)

    second = wait_until(
        lambda: (j := job(second)).status in {JobStatus.SUCCEEDED, JobStatus.FAILED} and j,
        120,
        "the second job",
        worker,
    )
    assert second.status == JobStatus.SUCCEEDED, second.error
    assert second.started_at >= first.finished_at
    assert ModelVersion.objects.get(job=second).number == kept.number + 1


def test_a_job_whose_worker_is_killed_is_marked_failed(start_worker, alice_client, dataset, training_faces, settings):
    settings.CURATOR_JOB_STALE_SECONDS = 3
    worker = start_worker(queues="train", concurrency=1, CURATOR_JOB_STALE_SECONDS="3")
    alice_client.post(reverse("training:job_create", args=[dataset.pk]), {"architecture": "seed-cnn", **LONG})
    pk = TrainingJob.objects.get().pk
    wait_until(lambda: job(pk).history, 180, "the first epoch", worker)
    worker.kill()
    assert job(pk).status == JobStatus.RUNNING
    time.sleep(4)
    assert alice_client.get(reverse("training:job_detail", args=[pk])).status_code == 200
    assert job(pk).status == JobStatus.RUNNING  # a page only reads the job
    jobs_sweep_stale()  # what Celery beat runs
    page = alice_client.get(reverse("training:job_detail", args=[pk]))
    assert page.status_code == 200
    failed = job(pk)
    assert failed.status == JobStatus.FAILED
    assert "stopped reporting" in failed.error
    assert "stopped reporting" in page.content.decode()


def test_a_queued_job_is_cancelled_at_once_and_never_runs(dataset, alice, training_faces):
    queued = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
    services.training_job_cancel(job=queued, keep_best=True)
    queued.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED and queued.finished_at
    # The message still reaches the worker later: it must not start the job.
    assert services.training_job_run(job_id=queued.pk).status == JobStatus.CANCELLED
    assert not ModelVersion.objects.exists()


def test_a_running_job_with_an_old_heartbeat_is_failed_and_a_fresh_one_is_not(dataset, alice, training_faces, settings):
    settings.CURATOR_JOB_STALE_SECONDS = 60
    stale = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
    fresh = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
    now = timezone.now()
    TrainingJob.objects.filter(pk=stale.pk).update(status="running", heartbeat_at=now - timedelta(seconds=61))
    TrainingJob.objects.filter(pk=fresh.pk).update(status="running", heartbeat_at=now - timedelta(seconds=30))
    assert services.training_jobs_check_stale(dataset=dataset) == 1
    assert job(stale.pk).status == JobStatus.FAILED
    assert job(fresh.pk).status == JobStatus.RUNNING
