"""Faults survived: Redis killed and PostgreSQL restarted in the middle of an alignment job and of a
training job, with real Celery workers and a real Celery beat. After the service comes back every
image is accounted for, no job stays "running" and no label is lost. Plus a full disk while a
worker writes a crop: that image becomes an error with the reason.

The shared PostgreSQL (5432) and Redis (6379) are never touched: each test gets a PRIVATE
redis-server on a free port, and the module a PRIVATE PostgreSQL cluster (initdb + pg_ctl, run as
the `postgres` user when the tests run as root, since initdb refuses root). The web side (this
process) and the workers all use them. Select these tests with `-m faults`."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import redis
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import InterfaceError, OperationalError, connections

from curator.models import AlignmentJob, Dataset, Face, Membership, SourceImage
from tests.celery_worker import CeleryProcess
from tests.conftest import ROOT, subprocess_env

pytestmark = [pytest.mark.faults, pytest.mark.worker, pytest.mark.slow]

PG_BIN = Path(os.environ.get("CURATOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
FIXTURES = ROOT / "tests" / "fixtures" / "faces"
# Short enough for a test to see the stale-job sweep act, long enough not to fire on a busy machine.
STALE_SECONDS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


# --- Private services -----------------------------------------------------------------------------


class PrivatePostgres:
    def __init__(self):
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (set CURATOR_PG_BIN)")
        # Not under pytest's tmp (mode 0700, owned by root): the postgres user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="curator-faults-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.name = "curator_faults"
        self._run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
        )
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")

    def _run(self, command: list[str]) -> None:
        subprocess.run(as_postgres(command), check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", *args]
        )

    def dsn(self, name: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name or self.name}"

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """A fast restart: every connection is cut, as a database fail-over or upgrade does."""
        self._pg_ctl("-m", "fast", "restart")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    def __init__(self, root: Path):
        self.port = free_port()
        self.root = root
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        # No persistence: a killed Redis comes back empty, the worst case (every queued message lost).
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill()


@pytest.fixture(scope="module")
def private_postgres():
    pg = PrivatePostgres()
    try:
        env = {**os.environ, "DATABASE_URL": pg.dsn(), "CURATOR_TESTING": "1", "DEBUG": "1"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def on_private_services(transactional_db, private_postgres, private_redis, django_db_blocker):
    """This process (the web side) on the private database and Redis, like the workers it starts;
    everything is put back (and the private database emptied) afterwards."""
    from django.core.management import call_command

    from curator.celery import app

    conn = connections["default"]
    conn.close()
    saved = dict(conn.settings_dict)
    conn.settings_dict.update(NAME=private_postgres.name, HOST="127.0.0.1", PORT=str(private_postgres.port))
    conn.settings_dict.update(USER="postgres", PASSWORD="")
    saved_broker = app.conf.broker_url
    use_broker(app, private_redis.url)
    try:
        with django_db_blocker.unblock():
            yield
            reconnect()
            call_command("flush", interactive=False, verbosity=0)
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)
        use_broker(app, saved_broker)


def use_broker(app, url: str) -> None:
    """Publish to another broker from now on (new connection pools; not app.close(), which would
    unregister the app and leave tasks imported later off its registry)."""
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


def reconnect() -> None:
    for _ in range(100):
        try:
            connections["default"].close()
            connections["default"].ensure_connection()
            return
        except (OperationalError, InterfaceError):
            time.sleep(0.1)


@pytest.fixture
def cluster(on_private_services, start_worker, private_redis, media_root, tmp_path):
    """start(queues) -> a worker; and one beat, all on the private services with a short stale time."""
    env = {
        "REDIS_URL": private_redis.url,
        "CURATOR_JOB_STALE_SECONDS": str(STALE_SECONDS),
        "CELERY_VISIBILITY_TIMEOUT": "30",
    }
    # Beat runs the stale-job sweep every 5 s on the private services.
    beat = CeleryProcess(
        ["beat", "-l", "info", "-s", str(tmp_path / "beat-schedule")],
        tmp_path / "beat.log",
        env=subprocess_env(media_root, **env),
    )

    def start(queues: str, concurrency: int = 2):
        return start_worker(queues=queues, concurrency=concurrency, **env)

    yield start
    beat.stop()


def broker_lost_then_back(worker, redis_server) -> None:
    """Kill Redis, wait until the worker's consumer has noticed (its log says the connection to the
    broker was lost), start Redis again and wait until the worker says it is connected again:
    events, never a fixed pause, so the test holds on a loaded machine as on a quiet one."""
    connected = worker.output().count("Connected to redis://")
    redis_server.kill()
    poll(
        lambda: worker.output().count("Connection to broker lost"),
        lambda n: n >= 1,
        timeout=120,
        what="the worker noticing that Redis is gone",
        log=worker.output,
    )
    redis_server.start()
    poll(
        lambda: worker.output().count("Connected to redis://"),
        lambda n: n > connected,
        timeout=180,
        what="the worker connecting to Redis again",
        log=worker.output,
    )


def poll(read, condition, *, timeout: float, what: str, log=lambda: ""):
    """read() until condition(value); survives this process's own connection being cut."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = read()
            if condition(value):
                return value
        except (OperationalError, InterfaceError):
            reconnect()
        time.sleep(0.1)
    raise AssertionError(f"{what}: still {value!r} after {timeout} s\n{log()[-6000:]}")


# --- Data -----------------------------------------------------------------------------------------


def people():
    from django.conf import settings
    from django.contrib.auth.models import Group, User

    alice = User.objects.create_user("alice", password="x")
    alice.groups.add(Group.objects.get_or_create(name=settings.CURATOR_GROUP)[0])
    return alice


def new_dataset(alice, name: str, **options) -> Dataset:
    dataset = Dataset.objects.create(name=name, created_by=alice, **options)
    Membership.objects.create(dataset=dataset, user=alice, role=Membership.Role.CURATOR)
    return dataset


def label_snapshot(dataset) -> dict[int, tuple]:
    return {
        f.pk: (f.label, f.label_origin, f.is_excluded, f.is_unsure)
        for f in Face.objects.filter(dataset=dataset).only("label", "label_origin", "is_excluded", "is_unsure")
    }


def human_labels(dataset) -> dict[int, tuple]:
    return {
        f.pk: (f.label, f.is_unsure)
        for f in Face.objects.filter(dataset=dataset, label_origin="human").only("label", "is_unsure")
    }


def assert_no_label_lost(dataset, human_before: dict[int, tuple]) -> None:
    """A person's labels stay on their faces; every labelled photo's largest face has a label."""
    assert human_labels(dataset) == human_before
    for image in SourceImage.objects.filter(dataset=dataset).exclude(label=""):
        largest = image.faces.filter(is_largest=True).first()
        if largest is not None:
            assert largest.label, (image.original_name, largest.label_origin)


def assert_alignment_complete(job: AlignmentJob) -> None:
    from tests.curator.test_align_tasks import assert_every_image_accounted_for

    job.refresh_from_db()
    assert_every_image_accounted_for(job)
    images = SourceImage.objects.filter(alignment_job=job)
    assert not images.filter(status="error").exists(), list(images.filter(status="error").values("status_reason"))
    for face in Face.objects.filter(image__alignment_job=job):
        assert default_storage.exists(face.crop), face.crop


def aligned_with_human_labels(alice, name: str, start):
    """A dataset of the fixture faces aligned once, then a person's labels on some faces; the
    second alignment job (the one the fault hits) must keep them. Slow images (upsample 2), small
    chunks: the fault lands while most of the job is still ahead."""
    from curator.services.alignment import alignment_job_start
    from tests.curator.test_align_tasks import import_fixture_faces

    dataset = new_dataset(alice, name, upsample=1)
    import_fixture_faces(dataset)
    worker = start("align", 2)
    first = alignment_job_start(dataset=dataset, images=dataset.images.all(), user=alice)
    poll(
        lambda: AlignmentJob.objects.get(pk=first.pk).status,
        lambda s: s == "done",
        timeout=240,
        what="first job",
        log=worker.output,
    )
    relabelled = list(Face.objects.filter(dataset=dataset, is_largest=True).order_by("id")[:10])
    for i, face in enumerate(relabelled):
        Face.objects.filter(pk=face.pk).update(
            label="female" if i % 2 else "male", label_origin="human", is_unsure=i % 3 == 0, version=face.version + 1
        )
    Dataset.objects.filter(pk=dataset.pk).update(upsample=2)  # the faulted job: slower images
    return dataset, worker


# --- Alignment --------------------------------------------------------------------------------------


def test_redis_killed_mid_alignment_job_every_image_is_accounted_for(cluster, private_redis, settings):
    from curator.services.alignment import alignment_job_start

    settings.CURATOR_ALIGN_CHUNK_SIZE = 2
    alice = people()
    dataset, worker = aligned_with_human_labels(alice, "redis-fault", cluster)
    before = human_labels(dataset)
    assert len(before) == 10

    job = alignment_job_start(dataset=dataset, images=dataset.images.all(), user=alice)
    job = poll(
        lambda: AlignmentJob.objects.get(pk=job.pk),
        lambda j: j.done >= 4,
        timeout=120,
        what="progress",
        log=worker.output,
    )
    job.refresh_from_db()
    assert job.status == "running" and job.done < job.total
    broker_lost_then_back(worker, private_redis)  # every queued chunk is gone with it

    # Nothing re-sends the lost chunks but the stale-job sweep (beat), once the job went quiet.
    job = poll(
        lambda: AlignmentJob.objects.get(pk=job.pk),
        lambda j: j.is_finished,
        timeout=180,
        what="job after Redis came back",
        log=worker.output,
    )
    assert_alignment_complete(job)
    assert job.resumed_count >= 1
    assert_no_label_lost(dataset, before)


def test_postgres_restarted_mid_alignment_job_every_image_is_accounted_for(cluster, private_postgres, settings):
    from curator.services.alignment import alignment_job_start

    settings.CURATOR_ALIGN_CHUNK_SIZE = 2
    alice = people()
    dataset, worker = aligned_with_human_labels(alice, "postgres-fault", cluster)
    before = human_labels(dataset)
    assert len(before) == 10

    job = alignment_job_start(dataset=dataset, images=dataset.images.all(), user=alice)
    job = poll(
        lambda: AlignmentJob.objects.get(pk=job.pk),
        lambda j: j.done >= 4,
        timeout=120,
        what="progress",
        log=worker.output,
    )
    private_postgres.restart()
    reconnect()
    job.refresh_from_db()
    assert job.done < job.total

    job = poll(
        lambda: AlignmentJob.objects.get(pk=job.pk),
        lambda j: j.is_finished,
        timeout=180,
        what="job after PostgreSQL came back",
        log=worker.output,
    )
    assert_alignment_complete(job)
    assert_no_label_lost(dataset, before)


# --- Training ---------------------------------------------------------------------------------------


def labelled_dataset(alice, name: str) -> Dataset:
    from tests.training.factories import add_faces, fixture_face_rows

    dataset = new_dataset(alice, name, min_faces_per_class=5)
    add_faces(dataset, fixture_face_rows(FIXTURES))
    return dataset


def train(dataset, alice):
    from training.services import training_job_create

    return training_job_create(dataset=dataset, user=alice, architecture="embedding", config={"epochs": 30})


def job_state(job_id: int):
    from training.models import TrainingJob

    return TrainingJob.objects.values("status", "phase", "error").get(pk=job_id)


def test_redis_killed_mid_training_job_it_finishes(cluster, private_redis):
    alice = people()
    dataset = labelled_dataset(alice, "train-redis-fault")
    before = label_snapshot(dataset)
    worker = cluster("train", 1)

    job = train(dataset, alice)
    poll(lambda: job_state(job.pk)["status"], lambda s: s == "running", timeout=120, what="start", log=worker.output)
    broker_lost_then_back(worker, private_redis)

    state = poll(
        lambda: job_state(job.pk), lambda s: s["status"] != "running", timeout=240, what="training", log=worker.output
    )
    # Training needs no broker once it runs: it finishes as if nothing happened.
    assert state["status"] == "succeeded", state
    assert label_snapshot(dataset) == before


def test_postgres_restarted_mid_training_job_it_ends_with_the_reason_and_runs_again(cluster, private_postgres):
    from training.models import ModelVersion

    alice = people()
    dataset = labelled_dataset(alice, "train-postgres-fault")
    before = label_snapshot(dataset)
    worker = cluster("train", 1)

    job = train(dataset, alice)
    poll(
        lambda: job_state(job.pk)["phase"],
        lambda p: p in ("computing descriptors", "loading TensorFlow", "training"),
        timeout=120,
        what="start",
        log=worker.output,
    )
    private_postgres.restart()
    reconnect()

    state = poll(
        lambda: job_state(job.pk), lambda s: s["status"] != "running", timeout=120, what="training", log=worker.output
    )
    assert state["status"] in ("succeeded", "failed"), state
    if state["status"] == "failed":
        # The reason names the database, not a vanished worker.
        assert "database" in state["error"].lower(), state
    assert label_snapshot(dataset) == before

    # The same worker trains again once the database is back.
    again = train(dataset, alice)
    state = poll(
        lambda: job_state(again.pk), lambda s: s["status"] not in ("queued", "running"), timeout=240, what="retrain"
    )
    assert state["status"] == "succeeded", state
    assert ModelVersion.objects.filter(job_id=again.pk).exists()
    assert label_snapshot(dataset) == before


# --- A full disk ------------------------------------------------------------------------------------


class FullDiskStorage(FileSystemStorage):
    """The worker's disk is full: originals can be read, no crop can be written (boundary mock)."""

    def _save(self, name, content):
        if "/faces/" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        return super()._save(name, content)


def test_disk_full_while_writing_a_crop_makes_that_image_an_error_with_the_reason(dataset, settings, media_root):
    from curator.services.alignment import alignment_chunk_process, alignment_job_start
    from tests.curator.test_align_tasks import import_fixture_faces

    images = import_fixture_faces(dataset, limit=3)
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullDiskStorage"}}
    job = alignment_job_start(dataset=dataset, images=dataset.images.all())
    # The test runs inside a transaction: the chunk is run here, as the worker would run it.
    alignment_chunk_process(job_id=job.pk, image_ids=[i.pk for i in images])

    job.refresh_from_db()
    assert job.status == "done" and job.done == 3 and job.errors == 3
    for image in SourceImage.objects.filter(pk__in=[i.pk for i in images]):
        assert image.status == "error"
        assert "No space left on device" in image.status_reason
        assert "could not store" in image.status_reason
    assert not Face.objects.filter(dataset=dataset).exists()
