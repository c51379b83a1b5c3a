"""What several benchmarks share: a real Celery worker subprocess (CeleryWorker, from
tests/celery_worker.py, which the tests use too), the clean-up of their Redis keys, and Django set up
on a bench's own PostgreSQL database. No Django imports at module import (Django is imported inside
the functions), so a bench can import this before it configures its environment."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from postgres_admin import ensure_database  # bench/, beside this module

ROOT = Path(__file__).resolve().parent.parent
# The worker launcher is shared with the tests; bench scripts import this module before they put the
# repository root on sys.path themselves.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.celery_worker import CeleryWorker  # noqa: E402

__all__ = ["CeleryWorker", "bench_django_setup", "bench_environment", "redis_cleanup"]


def redis_cleanup(prefix: str) -> None:
    """Delete the bench's own broker keys (only those under its prefix). After django.setup()."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def bench_environment(database_url: str) -> None:
    """Defaults of a bench on bench/grid.py's synthetic dataset, each kept when already set: its
    PostgreSQL database, the settings module, DEBUG and the bench media folder."""
    os.environ.setdefault("DATABASE_URL", database_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "curator.settings")
    os.environ.setdefault("DEBUG", "1")  # bench runs need no SECRET_KEY and no HTTPS redirects
    os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench-media"))


def bench_django_setup() -> None:
    """Create DATABASE_URL's database when missing, set Django up on it for timing (any host, no
    query log) and migrate it."""
    ensure_database(os.environ["DATABASE_URL"], "DATABASE_URL")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    # DEBUG=1 only picked the plain static storage at import; timing runs without query logging.
    settings.DEBUG = False
    call_command("migrate", verbosity=0)


def timed_get(client, url: str) -> tuple[float, bytes]:
    """(milliseconds, body) of one GET through a Django test client; any answer but 200 ends the
    bench with the URL and the status."""
    t = time.perf_counter()
    response = client.get(url)
    ms = (time.perf_counter() - t) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    return ms, response.content
