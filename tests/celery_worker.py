"""Real `celery -A curator ...` subprocesses: a worker for the tests (conftest's start_worker) and
the benchmarks (bench/support.py), beat for the fault tests. It imports no Django, so a bench can import it before it sets its
environment up and calls django.setup()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition, timeout: float = 120, what: str = "", worker: CeleryProcess | None = None):
    """condition()'s first true value, checked every 0.2 s; after `timeout` s an AssertionError
    with the worker's last log lines. The timeout is a generous bound on an event, not a pause."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    log = worker.output()[-3000:] if worker else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


class CeleryProcess:
    """`celery -A curator <args>` run from the repository root with `env` (default: this process's
    environment), its output in `log_path`, in its own process group so that stop() and kill()
    reach the pool children too. A worker is CeleryWorker; the fault tests run beat with this."""

    def __init__(self, args: list[str], log_path: Path, *, env: dict[str, str] | None = None):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "curator", *args],
            cwd=ROOT,
            env=dict(os.environ) if env is None else env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and its children), as a lost machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftover pool children, if any
        self.log.close()


class CeleryWorker(CeleryProcess):
    """`celery -A curator worker -Q <queues> -c <concurrency>` (prefork pool), as CeleryProcess;
    named `<name>-<pid>-<ns>@<host>`, unique even when one process starts several. Returns once the
    worker is ready; stops it and raises RuntimeError if it exits or is not ready within
    `ready_timeout`."""

    def __init__(
        self,
        queues: str,
        concurrency: int,
        log_path: Path,
        *,
        name: str,
        env: dict[str, str] | None = None,
        ready_timeout: float = 120,
    ):
        super().__init__(
            ["worker", "-Q", queues, "-c", str(concurrency)]
            + ["--pool", "prefork", "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
            + ["-n", f"{name}-{os.getpid()}-{time.time_ns()}@%h"],
            log_path,
            env=env,
        )
        try:
            self._wait_ready(queues, ready_timeout)
        except RuntimeError:
            self.stop()  # the caller never gets the object, so nothing else would stop it
            raise

    def _wait_ready(self, queues: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while " ready." not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"the celery {queues} worker exited early:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the celery {queues} worker not ready after {timeout}s:\n{self.output()[-3000:]}")
            time.sleep(0.2)
