"""The stale-job sweep (curator.tasks.jobs_sweep_stale, run by Celery beat): every background job
whose worker stopped reporting is resumed or failed by its own model's rule, fresh and finished
jobs are left alone, and pages only read a job's state."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from curator.celery import app
from curator.jobs import BackgroundJob, job_models
from curator.models import AlignmentJob, SourceImage
from curator.services.alignment import MAX_RESUMES
from curator.services.jobs import jobs_sweep_stale
from tests.curator.test_align_tasks import import_fixture_faces
from training.models import JobStatus, OutOfFoldRun, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def stale_seconds(settings) -> int:
    settings.CURATOR_JOB_STALE_SECONDS = 60
    return 60


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


def training_job(dataset, alice, status: str = "running", heartbeat: float | None = 0) -> TrainingJob:
    return TrainingJob.objects.create(
        dataset=dataset,
        created_by=alice,
        status=status,
        started_at=ago(3600),
        heartbeat_at=None if heartbeat is None else ago(heartbeat),
    )


def out_of_fold_run(dataset, status: str = "running", heartbeat: float = 0) -> OutOfFoldRun:
    return OutOfFoldRun.objects.create(dataset=dataset, status=status, heartbeat_at=ago(heartbeat))


def alignment_job(dataset, *, heartbeat: float, resumed: int = 0, images: int = 2) -> AlignmentJob:
    job = AlignmentJob.objects.create(
        dataset=dataset,
        total=images,
        status="running",
        started_at=ago(heartbeat),
        heartbeat_at=ago(heartbeat),
        resumed_count=resumed,
    )
    images = import_fixture_faces(dataset, limit=images)
    SourceImage.objects.filter(pk__in=[i.pk for i in images]).update(alignment_job=job, status="pending")
    return job


def reload(job):
    job.refresh_from_db()
    return job


def test_every_job_model_is_found_through_the_app_registry():
    models = set(job_models())
    assert {AlignmentJob, TrainingJob, OutOfFoldRun} <= models
    assert all(issubclass(m, BackgroundJob) and not m._meta.abstract for m in models)


def test_the_sweep_fails_a_stale_training_job_and_a_stale_out_of_fold_run(dataset, alice, stale_seconds):
    job = training_job(dataset, alice, heartbeat=stale_seconds + 5)
    run = out_of_fold_run(dataset, heartbeat=stale_seconds + 5)

    changed = jobs_sweep_stale()

    assert changed["training.TrainingJob"] == 1 and changed["training.OutOfFoldRun"] == 1
    job, run = reload(job), reload(run)
    assert job.status == JobStatus.FAILED and job.finished_at and job.phase == "failed"
    assert "stopped reporting" in job.error and "Start the job again" in job.error
    assert run.status == JobStatus.FAILED and run.finished_at
    assert "stopped reporting" in run.error and "start a new run" in run.error


def test_a_training_job_that_never_sent_a_heartbeat_is_judged_by_its_start(dataset, alice, stale_seconds):
    job = training_job(dataset, alice, heartbeat=None)  # started an hour ago
    jobs_sweep_stale()
    assert reload(job).status == JobStatus.FAILED


def test_the_sweep_leaves_fresh_queued_and_finished_jobs_alone(dataset, alice, stale_seconds):
    fresh = training_job(dataset, alice, heartbeat=stale_seconds - 20)
    queued = TrainingJob.objects.create(dataset=dataset, created_by=alice)
    TrainingJob.objects.filter(pk=queued.pk).update(created_at=ago(3600))
    succeeded = training_job(dataset, alice, status="succeeded", heartbeat=3600)
    cancelled = training_job(dataset, alice, status="cancelled", heartbeat=3600)
    fresh_run = out_of_fold_run(dataset, heartbeat=stale_seconds - 20)
    finished_run = out_of_fold_run(dataset, status="succeeded", heartbeat=3600)
    fresh_alignment = AlignmentJob.objects.create(dataset=dataset, total=1, status="running", heartbeat_at=ago(1))
    done_alignment = AlignmentJob.objects.create(dataset=dataset, total=1, status="done", heartbeat_at=ago(3600))

    assert sum(jobs_sweep_stale().values()) == 0

    assert [reload(j).status for j in (fresh, queued, succeeded, cancelled)] == [
        "running",
        "queued",
        "succeeded",
        "cancelled",
    ]
    assert [reload(r).status for r in (fresh_run, finished_run)] == ["running", "succeeded"]
    assert (reload(fresh_alignment).status, reload(fresh_alignment).resumed_count) == ("running", 0)
    assert reload(done_alignment).status == "done"


def test_the_sweep_resumes_a_stale_alignment_job(dataset, stale_seconds, django_capture_on_commit_callbacks):
    job = alignment_job(dataset, heartbeat=stale_seconds + 5)
    with django_capture_on_commit_callbacks(execute=False) as queued:  # no worker here: keep the chunks
        changed = jobs_sweep_stale()
    assert changed["curator.AlignmentJob"] == 1
    job = reload(job)
    assert (job.status, job.resumed_count) == ("running", 1)
    assert timezone.now() - job.heartbeat_at < timedelta(seconds=5)  # the resume counts as a sign of life
    assert len(queued) == 1  # its pending images go back to the align queue once committed
    # Resumed just now: the next sweep leaves it alone.
    assert jobs_sweep_stale()["curator.AlignmentJob"] == 0


def test_the_sweep_fails_an_alignment_job_after_the_resume_limit(dataset, stale_seconds):
    job = alignment_job(dataset, heartbeat=stale_seconds + 5, resumed=MAX_RESUMES)
    jobs_sweep_stale()
    job = reload(job)
    assert job.status == "failed" and job.finished_at and "No worker reported" in job.error
    assert (job.done, job.errors) == (2, 2)
    assert set(SourceImage.objects.filter(alignment_job=job).values_list("status", flat=True)) == {"error"}


def test_beat_runs_the_sweep_every_quarter_of_the_stale_time():
    schedule = django_settings.CELERY_BEAT_SCHEDULE["jobs-sweep-stale"]
    assert schedule["task"] == "curator.tasks.jobs_sweep_stale"
    assert schedule["task"] in app.tasks
    assert schedule["schedule"] == max(5.0, django_settings.CURATOR_JOB_STALE_SECONDS / 4)
    assert app.conf.beat_schedule["jobs-sweep-stale"]["task"] == "curator.tasks.jobs_sweep_stale"


def test_no_page_marks_a_stale_job_failed(dataset, alice, alice_client, stale_seconds):
    job = training_job(dataset, alice, heartbeat=stale_seconds + 600)
    run = out_of_fold_run(dataset, heartbeat=stale_seconds + 600)
    alignment = alignment_job(dataset, heartbeat=stale_seconds + 600)

    pages = [
        f"/training/datasets/{dataset.pk}/",
        f"/training/jobs/{job.pk}/",
        f"/training/jobs/{job.pk}/progress/",
        f"/api/v1/training/jobs/{job.pk}/",
        f"/review/{dataset.pk}/",
        f"/review/{dataset.pk}/runs/{run.pk}/status",
        f"/datasets/{dataset.pk}/jobs/{alignment.pk}/",
        f"/datasets/{dataset.pk}/jobs/{alignment.pk}/progress/",
    ]
    for page in pages:
        assert alice_client.get(page).status_code == 200, page

    assert reload(job).status == "running"
    assert reload(run).status == "running"
    assert (reload(alignment).status, reload(alignment).resumed_count) == ("running", 0)
    # Until the sweep runs.
    jobs_sweep_stale()
    assert reload(job).status == reload(run).status == "failed"
    assert reload(alignment).resumed_count == 1
