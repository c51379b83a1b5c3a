"""What several benchmarks share: a real Celery worker subprocess, the clean-up of their Redis keys,
and Django set up on a bench's own PostgreSQL database. No Django imports at module import (Django
is imported inside the functions), so a bench can import this before it configures its environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from postgres_admin import ensure_database  # bench/, beside this module

ROOT = Path(__file__).resolve().parent.parent


class CeleryWorker:
    """A real `celery -A curator worker -Q <queues>` subprocess with this process's environment (so
    the bench's database, media and Redis key prefix), its output in `log_path`; named
    `<name>-<pid>@<host>`. Returns once the worker is ready; exits the bench if it does not start."""

    def __init__(self, queues: str, concurrency: int, log_path: Path, name: str):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "curator", "worker", "-Q", queues, "-c", str(concurrency)]
            + ["--pool", "prefork", "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
            + ["-n", f"{name}-{os.getpid()}@%h"],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while " ready." not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the celery {queues} worker did not start:\n{self.output()[-3000:]}")
            time.sleep(0.3)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # pool children of this worker, if any are left
        self.log.close()


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
