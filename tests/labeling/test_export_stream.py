"""Exports at scale (issue 21): built in the background part by part, with a progress bar, in
flat memory (crops are copied in blocks, rows read in chunks), and resumable: a run that dies
half-way is continued from its last finished part, not started again."""

import csv
import io
import time
import zipfile

import pytest
from django.core.files.storage import default_storage

from curator.services.jobs import jobs_sweep_stale
from labeling import services
from labeling.models import ExportJob
from tests.labeling.factories import make_faces


def _zip(path: str) -> tuple[list[str], list[dict]]:
    with default_storage.open(path, "rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as archive:
        names = archive.namelist()
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    return names, manifest


@pytest.fixture
def faces(dataset, monkeypatch):
    monkeypatch.setattr(services, "EXPORT_PART_FACES", 4)
    return make_faces(dataset, 11, labels=["female", "male"])


class WorkerDied(Exception):
    pass


def test_a_run_that_died_continues_after_its_last_part(alice, dataset, faces, monkeypatch):
    job = services.export_job_create(user=alice, dataset=dataset, enqueue=False)

    def die_after_first_part(job):
        raise WorkerDied

    with pytest.raises(WorkerDied):
        services.export_job_run(job_id=job.pk, after_part=die_after_first_part)
    job.refresh_from_db()
    assert job.status == ExportJob.RUNNING and job.parts_done == 1 and job.done == 4 and job.total == 11
    assert len(job.boundaries) == 3

    written = []
    original = services._export_part_write
    monkeypatch.setattr(
        services, "_export_part_write", lambda job, k, splits: written.append(k) or original(job, k, splits)
    )
    job = services.export_job_run(job_id=job.pk)
    assert written == [1, 2]  # part 0 was kept, not written again
    assert job.status == ExportJob.SUCCEEDED and job.done == 11 and job.percent == 100
    names, manifest = _zip(job.path)
    assert sorted(int(r["face_id"]) for r in manifest) == sorted(f.pk for f in faces)
    assert len([n for n in names if n.endswith(".jpg")]) == 11 and names.count("manifest.csv") == 1
    assert {r["file"] for r in manifest} == {n for n in names if n.endswith(".jpg")}
    assert "meta_age" in manifest[0] and manifest[0]["meta_age"]
    _, parts = default_storage.listdir(f"datasets/{dataset.pk}/exports/.parts/{job.pk}")
    assert parts == []  # the parts are gone once joined


def test_a_stale_export_is_queued_again_then_failed(alice, dataset, faces, monkeypatch, settings):
    from labeling import tasks

    queued = []
    monkeypatch.setattr(tasks.export_run, "delay", lambda job_id: queued.append(job_id))
    job = services.export_job_create(user=alice, dataset=dataset, enqueue=False)
    long_ago = "2000-01-01T00:00:00Z"
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.RUNNING, heartbeat_at=long_ago)
    assert jobs_sweep_stale()["labeling.ExportJob"] == 1
    job.refresh_from_db()
    assert queued == [job.pk] and job.resumed_count == 1 and job.status == ExportJob.RUNNING
    ExportJob.objects.filter(pk=job.pk).update(resumed_count=services.EXPORT_MAX_RESUMES, heartbeat_at=long_ago)
    jobs_sweep_stale()
    job.refresh_from_db()
    assert job.status == ExportJob.FAILED and "stopped" in job.error and queued == [job.pk]


def test_the_panel_shows_the_progress_and_asks_again_while_it_runs(alice, alice_client, dataset, faces):
    job = services.export_job_create(user=alice, dataset=dataset, enqueue=False)
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.RUNNING, total=11, done=4, step="writing part 2 of 3")
    body = alice_client.get(f"/labeling/{dataset.pk}/exports/panel/").content.decode()
    assert '<progress max="11" value="4">' in body and "4 of 11 faces" in body and "writing part 2 of 3" in body
    assert 'hx-trigger="every 2s"' in body
    services.export_job_run(job_id=job.pk)
    body = alice_client.get(f"/labeling/{dataset.pk}/exports/panel/").content.decode()
    assert "<progress" not in body and "hx-trigger" not in body and ".zip" in body


def test_nothing_to_export_is_refused_at_once_or_fails_the_job_with_the_reason(alice, dataset):
    faces = make_faces(dataset, 3, labels=["female"])
    job = services.export_job_create(user=alice, dataset=dataset, enqueue=False)
    services.faces_update(user=alice, dataset=dataset, faces=[f.pk for f in faces], changes={"label": ""})
    job = services.export_job_run(job_id=job.pk)  # everything was unlabelled while it waited
    assert job.status == ExportJob.FAILED and "no included, labelled faces" in job.error
    with pytest.raises(services.NoFaces):
        services.export_job_create(user=alice, dataset=dataset, enqueue=False)
    with pytest.raises(services.NoFaces):
        services.export_create(user=alice, dataset=dataset)


@pytest.mark.worker
def test_the_page_queues_an_export_that_a_worker_builds(start_worker, alice, alice_client, dataset):
    make_faces(dataset, 6, labels=["female", "male"])
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/exports/", {"splits": "dataset"})
    assert response.status_code == 302
    job = ExportJob.objects.get(dataset=dataset)
    worker = start_worker(queues="align", concurrency=1)
    deadline = time.monotonic() + 60
    while not job.is_finished:
        assert time.monotonic() < deadline, worker.output()[-4000:]
        time.sleep(0.2)
        job.refresh_from_db()
    assert job.status == ExportJob.SUCCEEDED, job.error
    names, manifest = _zip(job.path)
    assert len(manifest) == 6 and len([n for n in names if n.endswith(".jpg")]) == 6
