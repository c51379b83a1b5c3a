"""Streaming import: uploads are stored and imported by a task, alignment chunks are queued while
the import still reads files, chunk sizes adapt to the job, and a lost import or an abandoned
upload never leaves a job running or a batch importing for ever."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from curator.models import AlignmentJob, ImportBatch, SourceImage
from curator.services import imports
from curator.services.alignment import alignment_chunk_process, chunk_sizes
from curator.services.imports import source_image_add
from curator.services.jobs import jobs_sweep_stale
from tests.celery_worker import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "faces"


def fixture_photos(n: int | None = None) -> list[Path]:
    return (sorted((FIXTURES / "lfw").glob("*/*.jpg")) + sorted((FIXTURES / "utkface").glob("*.jpg")))[:n]


def post_files(client, url: str, paths: list[Path], **extra):
    payload = [SimpleUploadedFile(p.name, p.read_bytes()) for p in paths]
    return client.post(url, {"files": payload, **extra}, **({"HTTP_ACCEPT": "application/json"} if extra else {}))


def makespan(sizes: list[int], workers: int) -> list[int]:
    """Images each worker aligns when each takes the next chunk as soon as it is free (one time
    unit per image): what the align queue does with prefetch 1."""
    busy = [0] * workers
    for size in sizes:
        busy[busy.index(min(busy))] += size
    return busy


# --- Chunk sizes ------------------------------------------------------------------------------------


def test_20_photos_on_2_workers_leave_no_idle_tail():
    sizes = chunk_sizes(20, workers=2, largest=16)
    assert sum(sizes) == 20
    assert sizes == [5, 4, 3, 2, 2, 1, 1, 1, 1]  # not 16 + 4
    assert makespan(sizes, 2) == [10, 10]


def test_big_jobs_use_the_largest_chunk_and_end_with_small_ones():
    sizes = chunk_sizes(4300, workers=2, largest=16)
    assert sum(sizes) == 4300 and sizes[0] == 16 and sizes[-4:] == [1, 1, 1, 1]
    assert max(makespan(sizes, 2)) - min(makespan(sizes, 2)) <= 1
    assert chunk_sizes(3, workers=4, largest=16) == [1, 1, 1]
    assert chunk_sizes(0, workers=2) == []


def test_the_worker_count_comes_from_the_setting(settings):
    settings.CURATOR_ALIGN_WORKERS = 8
    settings.CURATOR_ALIGN_CHUNK_SIZE = 16
    assert chunk_sizes(64)[0] == 4  # 64 / (8 workers x 2 chunks each)


# --- Alignment while the import reads files ---------------------------------------------------------


@pytest.mark.worker
def test_alignment_chunks_are_queued_before_the_import_ends(start_worker, dataset, copy_fixture_tree):
    photos = fixture_photos()
    root = copy_fixture_tree({f"{i:02d}-{p.name}": str(p.relative_to(FIXTURES)) for i, p in enumerate(photos)})
    worker = start_worker(queues="align", concurrency=2)
    batch = ImportBatch.objects.create(dataset=dataset, source=ImportBatch.Source.FOLDER, source_name=str(root))
    candidates = list(imports.folder_candidates(root))
    seen_while_importing = {}
    # A file read after the first group of rows has committed (the import writes rows a group at a time).
    slow_index = imports.IMPORT_GROUP_FILES + 3
    assert len(candidates) > slow_index
    slow = candidates[slow_index]
    read_slow = slow.read

    def read_after_some_alignment():
        # The import cannot go on until a worker has aligned some of its photos: only true if
        # chunks were queued while it was still reading files.
        job = wait_until(lambda: AlignmentJob.objects.filter(batch=batch, done__gt=0).first(), 60, "a chunk", worker)
        seen_while_importing.update(done=job.done, total=job.total, open=job.import_open, status=job.status)
        return read_slow()

    slow.read = read_after_some_alignment
    imports._run_import(batch, candidates)

    assert seen_while_importing["open"] and seen_while_importing["status"] == "running"
    assert 0 < seen_while_importing["done"] <= seen_while_importing["total"] <= slow_index
    batch.refresh_from_db()
    assert (batch.status, batch.imported_count, batch.file_count) == ("done", len(photos), len(photos))
    job = AlignmentJob.objects.get(batch=batch)
    job = wait_until(lambda: AlignmentJob.objects.get(pk=job.pk).is_finished and AlignmentJob.objects.get(pk=job.pk))
    assert (job.status, job.done, job.total, job.import_open) == ("done", len(photos), len(photos), False)
    assert not SourceImage.objects.filter(batch=batch, status="pending").exists()
    # Chunks started while the import still ran, on both processes.
    assert worker.output().count("alignment job") >= 4


@pytest.mark.django_db
def test_an_open_job_does_not_finish_while_its_import_adds_images(dataset, alice_client):
    images = [
        SourceImage.objects.create(dataset=dataset, file=p.name, original_name=p.name, sha256=str(i))
        for i, p in enumerate(fixture_photos(2))
    ]
    job = AlignmentJob.objects.create(
        dataset=dataset, status="running", total=1, import_open=True, started_at=timezone.now()
    )
    SourceImage.objects.filter(pk=images[0].pk).update(alignment_job=job)
    alignment_chunk_process(job_id=job.pk, image_ids=[images[0].pk])
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("running", 1, 1)  # every chunk done, import still open

    progress = alice_client.get(f"/datasets/{dataset.pk}/jobs/{job.pk}/progress/").json()
    assert progress["importing"] and progress["eta_s"] is None and not progress["finished"]
    fragment = alice_client.get(f"/datasets/{dataset.pk}/jobs/{job.pk}/progress/", HTTP_HX_REQUEST="true")
    assert "still adding images" in fragment.content.decode() and "hx-get" in fragment.content.decode()


# --- Uploads go to storage first ----------------------------------------------------------------------


@pytest.mark.worker
def test_upload_returns_before_the_import_and_a_closed_browser_loses_nothing(alice_client, dataset, start_worker):
    photos = fixture_photos(12)
    response = post_files(alice_client, f"/datasets/{dataset.pk}/import/", photos)

    # No import worker yet: the request only stored the files and queued the import.
    batch = ImportBatch.objects.get()
    assert response.status_code == 302 and response.url == f"/datasets/{dataset.pk}/imports/{batch.pk}/"
    assert (batch.status, batch.staged_count, batch.imported_count) == ("receiving", 12, 0)
    assert not SourceImage.objects.exists()
    staged = [e["path"] for e in imports.staged_entries(batch)]
    assert len(staged) == 12 and all(default_storage.exists(p) for p in staged)
    report = alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/report/").json()
    assert report["waiting_s"] is not None and report["live"]

    # The browser is gone; the workers come up and finish the job on their own.
    worker = start_worker(queues="align,import", concurrency=2)
    wait_until(lambda: ImportBatch.objects.get().status == "done", 60, "the import", worker)
    job = AlignmentJob.objects.get(batch=batch)
    wait_until(lambda: AlignmentJob.objects.get(pk=job.pk).is_finished, 120, "alignment", worker)
    batch.refresh_from_db()
    assert (batch.imported_count, batch.skipped_count) == (12, 0)
    assert set(SourceImage.objects.values_list("status", flat=True)) <= {"aligned", "no_face"}
    assert AlignmentJob.objects.get(pk=job.pk).done == 12
    assert not any(default_storage.exists(p) for p in staged)  # the staged copies are gone


@pytest.mark.django_db
def test_a_large_selection_arrives_in_parts(alice_client, dataset, admin_user, client):
    photos = fixture_photos(5)
    first = post_files(alice_client, f"/datasets/{dataset.pk}/import/", photos[:3], more="1")
    assert first.status_code == 202
    answer = first.json()
    batch = ImportBatch.objects.get(pk=answer["batch"])
    assert (batch.status, answer["received"]) == ("uploading", 3)
    assert answer["report_url"] == f"/datasets/{dataset.pk}/imports/{batch.pk}/"

    client.force_login(admin_user)  # staff, but not who started this upload
    assert post_files(client, answer["append_url"], photos[3:], more="0").status_code == 403

    last = post_files(alice_client, answer["append_url"], photos[3:], more="0")
    assert last.status_code == 202 and last.json()["received"] == 5
    batch.refresh_from_db()
    assert (batch.status, batch.staged_parts, batch.source_name) == ("receiving", 2, "5 files")
    again = post_files(alice_client, answer["append_url"], photos[:1], more="0")
    assert again.status_code == 409 and "complete already" in again.json()["error"]["message"]

    imports.import_batch_run_upload(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.imported_count) == ("done", 5)
    assert AlignmentJob.objects.get(batch=batch).total == 5


@pytest.mark.django_db
def test_an_upload_over_the_request_limit_is_refused_clearly(alice_client, dataset, settings):
    settings.CURATOR_MAX_REQUEST_BYTES = 20_000
    photos = fixture_photos(4)
    response = post_files(alice_client, f"/datasets/{dataset.pk}/import/", photos)
    assert response.status_code == 413
    assert (
        "CURATOR_MAX_REQUEST_BYTES" in response.content.decode() and "Nothing was stored" in response.content.decode()
    )
    as_json = post_files(alice_client, f"/datasets/{dataset.pk}/import/", photos, more="0")
    assert as_json.status_code == 413 and as_json.json()["error"]["code"] == "upload_too_large"
    assert not ImportBatch.objects.exists()


@pytest.mark.django_db
def test_too_many_files_in_one_request_are_refused_clearly(alice_client, dataset, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    response = post_files(alice_client, f"/datasets/{dataset.pk}/import/", fixture_photos(5))
    assert response.status_code == 413 and "More than 3 files in one request" in response.content.decode()
    assert not ImportBatch.objects.exists()


@pytest.mark.django_db
def test_annotators_may_not_add_parts(bob_client, alice_client, dataset):
    answer = post_files(alice_client, f"/datasets/{dataset.pk}/import/", fixture_photos(1), more="1").json()
    assert post_files(bob_client, answer["append_url"], fixture_photos(1), more="0").status_code == 403


# --- Lost imports and abandoned uploads ----------------------------------------------------------


@pytest.mark.django_db
def test_a_lost_import_fails_its_batch_and_its_job_still_finishes(
    dataset, settings, django_capture_on_commit_callbacks
):
    long_ago = timezone.now() - timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS + 5)
    batch = ImportBatch.objects.create(
        dataset=dataset, source="folder", status="receiving", started_at=long_ago, heartbeat_at=long_ago
    )
    job = AlignmentJob.objects.create(
        dataset=dataset, batch=batch, status="running", total=2, import_open=True, started_at=long_ago
    )
    AlignmentJob.objects.filter(pk=job.pk).update(heartbeat_at=long_ago)
    images = []
    for i, photo in enumerate(fixture_photos(3)):
        image, _written = source_image_add(
            dataset=dataset, data=photo.read_bytes(), original_name=photo.name, sha256=str(i), batch=batch
        )
        images.append(image)
    # Two were handed over to the job; the worker died before handing over the third.
    SourceImage.objects.filter(pk__in=[images[0].pk, images[1].pk]).update(alignment_job=job)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        changed = jobs_sweep_stale()
    assert changed["curator.ImportBatch"] + changed["curator.AlignmentJob"] >= 1
    batch.refresh_from_db()
    job.refresh_from_db()
    assert batch.status == "failed" and "stopped reporting" in batch.error and batch.finished_at
    assert (job.import_open, job.total, job.status) == (False, 3, "running")
    assert queued  # the unfinished images went back on the queue
    assert set(SourceImage.objects.values_list("alignment_job", flat=True)) == {job.pk}

    alignment_chunk_process(job_id=job.pk, image_ids=[i.pk for i in images])
    job.refresh_from_db()
    assert (job.status, job.done) == ("done", 3)


@pytest.mark.django_db
def test_an_abandoned_upload_is_imported_as_far_as_it_got(
    alice_client, dataset, settings, django_capture_on_commit_callbacks
):
    answer = post_files(alice_client, f"/datasets/{dataset.pk}/import/", fixture_photos(2), more="1").json()
    long_ago = timezone.now() - timedelta(seconds=settings.CURATOR_JOB_STALE_SECONDS + 5)
    ImportBatch.objects.filter(pk=answer["batch"]).update(heartbeat_at=long_ago)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert jobs_sweep_stale()["curator.ImportBatch"] == 1
    batch = ImportBatch.objects.get()
    assert batch.status == "receiving" and "upload stopped after 2 files" in batch.error
    assert len(queued) == 1  # the import task
    imports.import_batch_run_upload(batch_id=batch.pk)
    assert ImportBatch.objects.get().imported_count == 2


@pytest.mark.django_db
def test_an_import_task_delivered_twice_imports_once(alice_client, dataset):
    post_files(alice_client, f"/datasets/{dataset.pk}/import/", fixture_photos(2))
    batch = ImportBatch.objects.get()
    assert imports.import_batch_run_upload(batch_id=batch.pk) == 2
    assert imports.import_batch_run_upload(batch_id=batch.pk) == 0
    assert ImportBatch.objects.get().duplicate_count == 0


# --- The report page follows the import -------------------------------------------------------------


@pytest.mark.django_db
def test_the_report_polls_until_import_and_alignment_are_done(alice_client, bob_client, charlie_client, dataset):
    post_files(alice_client, f"/datasets/{dataset.pk}/import/", fixture_photos(2))
    batch = ImportBatch.objects.get()
    url = f"/datasets/{dataset.pk}/imports/{batch.pk}/report/"
    assert "hx-get" in alice_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert (
        "Waiting for an import worker"
        in alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/").content.decode()
    )

    imports.import_batch_run_upload(batch_id=batch.pk)
    report = bob_client.get(url).json()  # annotators may watch
    assert (report["status"], report["imported"], report["processed"], report["files"]) == ("done", 2, 2, 2)
    assert report["live"]  # its alignment job still runs
    AlignmentJob.objects.filter(batch=batch).update(status="done", finished_at=timezone.now())
    fragment = alice_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-get" not in fragment and 'id="imported">2<' in fragment
    assert charlie_client.get(url).status_code == 404


@pytest.mark.django_db
def test_files_over_the_memory_threshold_still_arrive_whole(alice_client, dataset, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000  # every photo spills to a temporary file
    photos = fixture_photos(3)
    response = post_files(alice_client, f"/datasets/{dataset.pk}/import/", photos)
    batch = ImportBatch.objects.get()
    assert response.status_code == 302 and batch.staged_bytes == sum(p.stat().st_size for p in photos)
    imports.import_batch_run_upload(batch_id=batch.pk)
    assert ImportBatch.objects.get().imported_count == 3
    assert sorted(SourceImage.objects.values_list("original_name", flat=True)) == sorted(p.name for p in photos)
