"""Deleting a dataset while a job trains on it leaves none of the job's files behind: the job
checks, under the dataset's row lock, before it stores its model and snapshot; a deletion that
comes while it stores waits for it and then deletes what it stored; the periodic sweep
(tests/curator/test_storage_cleanup.py) removes whatever a worker stores later still."""

import threading
import time
from dataclasses import dataclass, field

import pytest
from django.db import connection, connections

from curator.models import Dataset
from curator.services.datasets import dataset_delete
from curator.storage import storage_walk
from tests.labeling.factories import make_faces
from training import services
from training.data import training_data_collect
from training.models import ModelVersion, TrainingJob

VERSIONS = {"tensorflow": "test", "keras": "test"}


@dataclass
class HeldModel:
    """Stands in for the trained Keras model at the one point this test needs: its save() tells
    the test it is storing (the dataset's row is locked then) and waits to be let go."""

    saving: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def save(self, path: str) -> None:
        self.saving.set()
        assert self.release.wait(60)
        with open(path, "wb") as handle:
            handle.write(b"weights")


@dataclass
class Fit:
    model: object = None
    output: str = "softmax"
    choice: dict = field(default_factory=dict)


def job_for(dataset) -> tuple[TrainingJob, object]:
    make_faces(dataset, 20, labels=["female", "male"])
    job = services.training_job_create(dataset=dataset, user=None, enqueue=False)
    return job, training_data_collect(dataset=dataset, seed=0)


def files_of(dataset_id: int) -> list[str]:
    return list(storage_walk(f"datasets/{dataset_id}"))


def test_a_job_whose_dataset_was_deleted_stores_nothing(dataset):
    job, data = job_for(dataset)
    dataset_id = dataset.pk
    dataset_delete(dataset=Dataset.objects.get(pk=dataset_id))
    assert files_of(dataset_id) == []

    with pytest.raises(services.DatasetGone):
        services.model_version_register(job=job, data=data, fit=Fit(), config=job.config, versions=VERSIONS)
    assert files_of(dataset_id) == []
    # The worker's whole run, when the job went with its dataset before it started: nothing, no error.
    assert services.training_job_run(job_id=job.pk) is None


def _blocked_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_a_deletion_while_the_job_stores_waits_for_it_then_deletes_what_it_stored(dataset):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite has none to wait on)")
    job, data = job_for(dataset)
    dataset_id = dataset.pk
    model = HeldModel()
    errors: list[BaseException] = []
    deleter_pid: list[int] = []

    def in_thread(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # reported to the test below
                errors.append(exc)
            finally:
                connections.close_all()

        return threading.Thread(target=run)

    def delete():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            deleter_pid.append(cursor.fetchone()[0])
        dataset_delete(dataset=Dataset.objects.get(pk=dataset_id))

    storing = in_thread(
        lambda: services.model_version_register(
            job=job, data=data, fit=Fit(model=model), config=job.config, versions=VERSIONS
        )
    )
    storing.start()
    assert model.saving.wait(60)  # the job holds the dataset's row lock and is writing its model
    deleting = in_thread(delete)
    deleting.start()
    deadline = time.monotonic() + 60
    while not (deleter_pid and _blocked_on_a_lock(deleter_pid[0])):
        assert deleting.is_alive() and time.monotonic() < deadline, errors
        time.sleep(0.05)
    model.release.set()
    storing.join(60)
    deleting.join(60)

    assert errors == []
    assert not Dataset.objects.filter(pk=dataset_id).exists()
    assert not ModelVersion.objects.filter(dataset_id=dataset_id).exists()
    assert files_of(dataset_id) == []
