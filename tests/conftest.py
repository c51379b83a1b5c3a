"""Shared fixtures. Users are named as in the permission tests: alice is a curator who owns the
dataset, bob is an annotator on it, charlie has no access, and admin is staff."""

import os
import shutil
import time
import types
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.test import Client

from curator.models import Dataset, Membership
from tests.celery_worker import CeleryWorker

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_FACES = ROOT / "tests" / "fixtures" / "faces"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    """Every test writes its files to its own MEDIA_ROOT."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def fixture_faces() -> Path:
    """41 real faces: utkface/<utkface name> crops and lfw/<gender>/<name>.jpg photos."""
    return FIXTURE_FACES


@pytest.fixture
def dev_dataset() -> Path:
    """The large development set (../shared/datasets/dev, or CURATOR_DEV_DATASET)."""
    path = Path(django_settings.CURATOR_DEV_DATASET)
    if not (path / "labels.csv").exists():
        pytest.skip(f"development data set not found at {path} (set CURATOR_DEV_DATASET)")
    return path


def make_user(username: str, **extra) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, email=f"{username}@example.com", **extra)


@pytest.fixture
def alice(db) -> User:
    user = make_user("alice")
    group, _ = Group.objects.get_or_create(name=django_settings.CURATOR_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def bob(db) -> User:
    return make_user("bob")


@pytest.fixture
def charlie(db) -> User:
    return make_user("charlie")


@pytest.fixture
def admin_user(db) -> User:
    return make_user("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def dataset(alice, bob) -> Dataset:
    """alice's dataset (female, male), shared with bob as annotator."""
    ds = Dataset.objects.create(name="faces", created_by=alice)
    Membership.objects.create(dataset=ds, user=alice, role=Membership.Role.CURATOR)
    Membership.objects.create(dataset=ds, user=bob, role=Membership.Role.ANNOTATOR)
    return ds


def logged_in_client(user: User) -> Client:
    """A test client of its own per user, so alice_client and bob_client can be used side by side."""
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice) -> Client:
    return logged_in_client(alice)


@pytest.fixture
def bob_client(bob) -> Client:
    return logged_in_client(bob)


@pytest.fixture
def charlie_client(charlie) -> Client:
    return logged_in_client(charlie)


def database_url_of_test_db() -> str:
    """DATABASE_URL of the test database pytest-django created, for processes we start."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s["PASSWORD"]:
        auth += f":{s['PASSWORD']}"
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def subprocess_env(media_root: Path, **extra: str) -> dict[str, str]:
    """Environment for a worker or server process that shares this test's database, media and
    Redis key prefix."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_of_test_db(),
        MEDIA_ROOT=str(media_root),
        CURATOR_REDIS_PREFIX=django_settings.CURATOR_REDIS_PREFIX,
        CURATOR_TESTING="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def start_worker(transactional_db, media_root, tmp_path):
    """Start real Celery workers: `start_worker(queues="align", concurrency=2, **env)`.
    Tests using it run outside a transaction so the worker sees their rows."""
    workers: list[CeleryWorker] = []

    def start(queues: str = "align,train,predict,embed", concurrency: int = 2, **env: str) -> CeleryWorker:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        worker = CeleryWorker(queues, concurrency, log_path, name="test", env=subprocess_env(media_root, **env))
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def copy_fixture_tree(tmp_path, fixture_faces):
    """Copy some fixture faces into a fresh folder: copy_fixture_tree({"female/a.jpg": "lfw/..."})."""

    def copy(mapping: dict[str, str]) -> Path:
        root = tmp_path / f"tree-{time.time_ns()}"
        for dest, src in mapping.items():
            target = root / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fixture_faces / src, target)
        return root

    return copy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server process (moto), shared by the tests of one run."""
    from tests.s3server import S3Server

    with S3Server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_storage(s3_server, settings):
    """This test's files go to a fresh private bucket instead of MEDIA_ROOT. Returns the server,
    the bucket and the environment a worker host needs: `start_worker(**s3_storage.env)`."""
    bucket = s3_server.create_bucket(f"curator-test-{time.time_ns()}")
    settings.STORAGES = s3_server.storages_setting(bucket, django_settings.STORAGES)
    return types.SimpleNamespace(server=s3_server, bucket=bucket, env=s3_server.env(bucket))
