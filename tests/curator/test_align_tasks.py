"""Alignment jobs through a real Celery worker on real Redis: chunks spread over the worker's
processes, counters, re-runs, a worker killed mid-chunk, orphaned jobs, and who may watch."""

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db.models import Sum
from django.utils import timezone

from curator.models import AlignmentJob, Face, SourceImage
from curator.services.alignment import MAX_RESUMES, alignment_job_check_stale, alignment_job_start, chunk_sizes
from curator.services.imports import source_image_add
from curator.tasks import jobs_sweep_stale
from tests.celery_worker import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"


def import_fixture_faces(dataset, limit: int | None = None) -> list[SourceImage]:
    """Store the fixture faces as a dataset's images (what the import does), labelled."""
    images = []
    paths = sorted((FIXTURES / "lfw").glob("*/*.jpg")) + sorted((FIXTURES / "utkface").glob("*.jpg"))
    for path in paths[:limit]:
        label = (
            path.parent.name
            if path.parent.name in ("female", "male")
            else ("female" if "_1_" in path.name[:5] else "male")
        )
        image, _written = source_image_add(
            dataset=dataset, data=path.read_bytes(), original_name=path.name, label=label
        )
        images.append(image)
    return images


def wait_for(job: AlignmentJob, condition, timeout: float = 120, worker=None) -> AlignmentJob:
    """The job, reloaded, once condition(job) holds."""

    def reached() -> bool:
        job.refresh_from_db()
        return condition(job)

    wait_until(reached, timeout, what=f"alignment job {job.pk}", worker=worker)
    return job


def assert_every_image_accounted_for(job: AlignmentJob) -> None:
    images = SourceImage.objects.filter(alignment_job=job)
    assert not images.filter(status="pending").exists()
    assert job.status == "done"
    assert job.done == job.total == images.count()
    assert job.faces == Face.objects.filter(image__alignment_job=job).count()
    assert job.faces == images.aggregate(n=Sum("face_count"))["n"]
    assert job.no_face == images.filter(status="no_face").count()
    assert job.errors == images.filter(status="error").count()
    for image in images:
        assert image.faces.count() == image.face_count
        assert sorted(image.faces.values_list("index", flat=True)) == list(range(image.face_count))


@pytest.mark.worker
def test_job_spreads_chunks_over_worker_processes(start_worker, dataset, alice, settings):
    settings.CURATOR_ALIGN_CHUNK_SIZE = 3
    settings.CURATOR_ALIGN_WORKERS = 2
    images = import_fixture_faces(dataset)
    worker = start_worker(queues="align", concurrency=2)

    job = alignment_job_start(dataset=dataset, images=dataset.images.all(), user=alice)
    assert (job.status, job.total, job.created_by) == ("queued", len(images), alice)
    assert job.options["crop_size"] == 160 and job.options["landmark_set"] == "inner_eyes_and_bottom_lip"
    job = wait_for(job, lambda j: j.is_finished, worker=worker)

    assert_every_image_accounted_for(job)
    assert job.errors == 0 and job.faces >= len(images)
    assert job.started_at and job.finished_at and job.heartbeat_at
    # Every chunk ran, on both processes of the pool.
    log = worker.output()
    processes = set(re.findall(r"(ForkPoolWorker-\d+)\] alignment job", log))
    assert len(processes) == 2, log[-3000:]
    # Guided chunks: at most CURATOR_ALIGN_CHUNK_SIZE, smaller towards the end of the job.
    sizes = [int(n) for n in re.findall(r"alignment job \d+: chunk of (\d+) images", log)]
    assert sorted(sizes) == sorted(chunk_sizes(len(images), workers=2, largest=3))
    assert max(sizes) == 3 and min(sizes) == 1
    # The image label went to the largest face of each photo.
    for image in SourceImage.objects.filter(dataset=dataset):
        largest = image.faces.get(is_largest=True)
        assert (largest.label, largest.label_origin) == (image.label, "import")
        assert not image.faces.filter(is_largest=False).exclude(label="").exists()


@pytest.mark.worker
def test_rerun_through_the_worker_keeps_human_labels(start_worker, dataset, settings):
    settings.CURATOR_ALIGN_CHUNK_SIZE = 4
    import_fixture_faces(dataset, limit=8)
    worker = start_worker(queues="align", concurrency=2)
    first = wait_for(alignment_job_start(dataset=dataset, images=dataset.images.all()), lambda j: j.is_finished)
    faces_before = Face.objects.filter(dataset=dataset).count()
    relabelled = Face.objects.filter(dataset=dataset, is_largest=True).order_by("id").first()
    Face.objects.filter(pk=relabelled.pk).update(label="male", label_origin="human", is_unsure=True)
    old_crop = relabelled.crop

    second = alignment_job_start(dataset=dataset, images=dataset.images.all())
    second = wait_for(second, lambda j: j.is_finished, worker=worker)

    assert_every_image_accounted_for(second)
    assert second.faces == first.faces == faces_before == Face.objects.filter(dataset=dataset).count()
    again = Face.objects.get(pk=relabelled.pk)
    assert (again.label, again.label_origin, again.is_unsure) == ("male", "human", True)
    assert again.crop != old_crop and default_storage.exists(again.crop)
    assert not default_storage.exists(old_crop)


@pytest.mark.worker
def test_worker_killed_mid_chunk_loses_nothing(start_worker, dataset, settings):
    settings.CURATOR_ALIGN_CHUNK_SIZE = 6
    dataset.upsample = 2  # slower images, so the kill lands inside a chunk
    dataset.save()
    import_fixture_faces(dataset)
    # Unacknowledged messages of a dead worker go back to the queue after 5 s.
    first = start_worker(queues="align", concurrency=2, CELERY_VISIBILITY_TIMEOUT="5")
    job = alignment_job_start(dataset=dataset, images=dataset.images.all())
    job = wait_for(job, lambda j: j.done >= 6, worker=first)
    # Not at once: the 6th image is often a chunk's last, and its process then takes the next
    # message. Kombu's Redis transport takes a message off the queue (BRPOP) a moment before it
    # records it as unacknowledged; a worker killed in between loses it, and only the stale-job
    # sweep brings it back (test_job_sweep.py). This test is about redelivery, so it kills mid-chunk.
    time.sleep(0.3)
    first.kill()
    job.refresh_from_db()
    assert job.status == "running" and job.done < job.total

    # The restarted worker puts messages unacknowledged for longer than the visibility timeout
    # back on the queue as it starts (running workers sweep for them every ~100 s).
    time.sleep(6)
    second = start_worker(queues="align", concurrency=2, CELERY_VISIBILITY_TIMEOUT="5")
    job = wait_for(job, lambda j: j.is_finished, timeout=90, worker=second)
    assert_every_image_accounted_for(job)
    assert job.resumed_count == 0  # finished by redelivery (acks_late), not by the stale check
    # Some images were started by the killed worker and aligned again by the new one.
    assert SourceImage.objects.filter(alignment_job=job, align_attempts__gte=2).exists()


@pytest.mark.worker
def test_stale_job_is_resumed_by_a_starting_worker(start_worker, dataset, settings):
    settings.CURATOR_ALIGN_CHUNK_SIZE = 4
    images = import_fixture_faces(dataset, limit=6)
    # A job whose worker vanished long ago: running, no heartbeat for ten minutes, no messages.
    long_ago = timezone.now() - timedelta(minutes=10)
    job = AlignmentJob.objects.create(
        dataset=dataset,
        total=len(images),
        status="running",
        started_at=long_ago,
        heartbeat_at=long_ago,
        options={"crop_size": 160},
    )
    SourceImage.objects.filter(dataset=dataset).update(alignment_job=job, status="pending")

    worker = start_worker(queues="align", concurrency=2)
    job = wait_for(job, lambda j: j.is_finished, worker=worker)
    assert job.resumed_count == 1
    assert_every_image_accounted_for(job)


@pytest.mark.worker
def test_stale_job_is_resumed_by_the_sweep(start_worker, dataset, alice_client, settings):
    images = import_fixture_faces(dataset, limit=4)
    worker = start_worker(queues="align", concurrency=1)
    long_ago = timezone.now() - timedelta(minutes=10)
    job = AlignmentJob.objects.create(
        dataset=dataset, total=len(images), status="running", started_at=long_ago, heartbeat_at=long_ago
    )
    SourceImage.objects.filter(dataset=dataset).update(alignment_job=job, status="pending")

    response = alice_client.get(f"/datasets/{dataset.pk}/jobs/{job.pk}/progress/")
    assert response.status_code == 200
    jobs_sweep_stale.delay()  # what Celery beat sends; the align worker runs it
    job = wait_for(job, lambda j: j.is_finished, worker=worker)
    assert job.resumed_count == 1
    assert_every_image_accounted_for(job)


@pytest.mark.django_db
def test_job_that_keeps_losing_its_workers_fails_with_every_image_accounted_for(dataset, settings):
    images = import_fixture_faces(dataset, limit=3)
    long_ago = timezone.now() - timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS + 5)
    job = AlignmentJob.objects.create(
        dataset=dataset,
        total=3,
        done=1,
        status="running",
        started_at=long_ago,
        heartbeat_at=long_ago,
        resumed_count=MAX_RESUMES,
    )
    SourceImage.objects.filter(pk=images[0].pk).update(alignment_job=job, status="aligned")
    SourceImage.objects.filter(pk__in=[i.pk for i in images[1:]]).update(alignment_job=job, status="pending")

    job = alignment_job_check_stale(job=job)

    assert job.status == "failed" and job.finished_at
    assert (job.done, job.errors) == (3, 2)
    assert "No worker reported" in job.error
    for image in SourceImage.objects.filter(pk__in=[i.pk for i in images[1:]]):
        assert image.status == "error" and "stopped reporting" in image.status_reason


@pytest.mark.django_db
def test_fresh_or_queued_jobs_are_left_alone(dataset):
    fresh = AlignmentJob.objects.create(dataset=dataset, total=1, status="running", heartbeat_at=timezone.now())
    queued = AlignmentJob.objects.create(dataset=dataset, total=1, status="queued")
    AlignmentJob.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(hours=1))
    queued.refresh_from_db()
    assert alignment_job_check_stale(job=fresh).status == "running"
    assert alignment_job_check_stale(job=queued).status == "queued"
    assert AlignmentJob.objects.get(pk=fresh.pk).resumed_count == 0


@pytest.mark.django_db
def test_job_without_images_is_done_at_once(dataset):
    job = alignment_job_start(dataset=dataset, images=SourceImage.objects.none())
    assert (job.status, job.total) == ("done", 0)


# --- The job page and who may see it -----------------------------------------------------------


@pytest.fixture
def running_job(dataset):
    return AlignmentJob.objects.create(
        dataset=dataset,
        total=10,
        done=4,
        faces=5,
        no_face=1,
        errors=0,
        status="running",
        started_at=timezone.now() - timedelta(seconds=2),
        heartbeat_at=timezone.now(),
    )


def test_alice_watches_the_progress_bar(alice_client, dataset, running_job):
    page = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/")
    body = page.content.decode()
    assert page.status_code == 200
    assert f'hx-get="/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/"' in body
    assert "4 / 10" in body
    progress = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/").json()
    assert (progress["done"], progress["total"], progress["faces"], progress["no_face"]) == (4, 10, 5, 1)
    assert progress["percent"] == 40.0 and progress["images_per_s"] > 0 and not progress["finished"]
    fragment = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/", HTTP_HX_REQUEST="true")
    assert "4 / 10" in fragment.content.decode() and "HX-Trigger" not in fragment


def test_finished_job_page_stops_polling(alice_client, dataset, running_job):
    AlignmentJob.objects.filter(pk=running_job.pk).update(status="done", done=10, finished_at=timezone.now())
    body = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/").content.decode()
    assert "hx-get" not in body
    fragment = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/", HTTP_HX_REQUEST="true")
    assert fragment["HX-Trigger"] == "jobFinished"


def test_bob_the_annotator_may_watch_too(bob_client, dataset, running_job):
    assert bob_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/").status_code == 200
    assert bob_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/").status_code == 200


def test_charlie_sees_no_job_of_a_dataset_he_is_not_on(charlie_client, dataset, running_job):
    assert charlie_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/").status_code == 404
    assert charlie_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/").status_code == 404


def test_job_ids_of_another_dataset_are_not_found(alice_client, dataset, running_job, charlie):
    from curator.models import Dataset

    other = Dataset.objects.create(name="charlies", created_by=charlie)
    assert alice_client.get(f"/datasets/{other.pk}/jobs/{running_job.pk}/").status_code == 404
    assert alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk + 999}/progress/").status_code == 404


def test_anonymous_visitors_are_sent_to_login(client, dataset, running_job):
    response = client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/")
    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_only_curators_may_start_alignment(bob_client, dataset, alice):
    import_fixture_faces(dataset, limit=1)
    assert bob_client.post(f"/datasets/{dataset.pk}/realign/").status_code == 403
    assert not AlignmentJob.objects.exists()
    bob_client.force_login(alice)
    response = bob_client.post(f"/datasets/{dataset.pk}/realign/")
    job = AlignmentJob.objects.get()
    assert response.status_code == 302 and response.url.endswith(f"/jobs/{job.pk}/")


@pytest.mark.django_db
def test_image_that_keeps_killing_its_worker_is_given_up_on(dataset, django_capture_on_commit_callbacks):
    from curator.services.alignment import MAX_ATTEMPTS, alignment_chunk_process

    images = import_fixture_faces(dataset, limit=3)
    with django_capture_on_commit_callbacks(execute=False):  # no worker here: run the chunk ourselves
        job = alignment_job_start(dataset=dataset, images=dataset.images.all())
    # The middle image was being aligned each time a worker died.
    SourceImage.objects.filter(pk=images[1].pk).update(align_attempts=MAX_ATTEMPTS)

    with django_capture_on_commit_callbacks(execute=True):
        alignment_chunk_process(job_id=job.pk, image_ids=[i.pk for i in images])

    job.refresh_from_db()
    assert (job.status, job.done, job.errors) == ("done", 3, 1)
    culprit = SourceImage.objects.get(pk=images[1].pk)
    assert culprit.status == "error" and "stopped its worker 3 times" in culprit.status_reason
    assert [SourceImage.objects.get(pk=i.pk).status for i in (images[0], images[2])] == ["aligned", "aligned"]
    # Starting alignment again gives it a fresh chance.
    with django_capture_on_commit_callbacks(execute=False):
        alignment_job_start(dataset=dataset, images=dataset.images.filter(pk=culprit.pk))
    assert SourceImage.objects.get(pk=culprit.pk).align_attempts == 0


@pytest.mark.django_db
def test_job_page_lists_images_without_faces_and_why(alice_client, dataset, running_job):
    SourceImage.objects.create(
        dataset=dataset, file="x", original_name="beach.jpg", sha256="1", status="no_face", alignment_job=running_job
    )
    SourceImage.objects.create(
        dataset=dataset,
        file="y",
        original_name="broken.jpg",
        sha256="2",
        status="error",
        status_reason="unreadable image: truncated image data (the file ends early)",
        alignment_job=running_job,
    )
    body = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/").content.decode()
    assert "beach.jpg" in body and "broken.jpg" in body and "truncated image data" in body
    progress = alice_client.get(f"/datasets/{dataset.pk}/jobs/{running_job.pk}/progress/").json()
    assert {p["name"] for p in progress["problems"]} == {"beach.jpg", "broken.jpg"}
