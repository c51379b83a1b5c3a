"""`/healthz` for load balancers: can this web process reach the database, the broker (Redis) and
the file storage? 200 with `"status": "ok"` when all three answer, 503 with `"status": "fail"`
otherwise; every check says whether it passed, how long it took and, when it failed, the kind of
error (the class name only: hosts, URLs and credentials stay in the server log).

No login (a balancer has none). The three checks run at the same time, each bounded by
CURATOR_HEALTH_TIMEOUT seconds, so a hung service answers 503 in about that long instead of
holding the balancer's probe."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Where the storage check writes (and at once deletes) its tiny object.
HEALTH_PREFIX = "healthz"


def check_database() -> None:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # This runs in a pool thread: its connection must not outlive it.
        connections.close_all()


def check_broker() -> None:
    timeout = settings.CURATOR_HEALTH_TIMEOUT
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def check_storage() -> None:
    # A write and a delete prove more than exists(): a full disk or a read-only bucket fails here.
    name = default_storage.save(f"{HEALTH_PREFIX}/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    default_storage.delete(name)


CHECKS = {"database": check_database, "broker": check_broker, "storage": check_storage}


def _timed(check) -> dict:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:
        logger.warning("health check %s failed", check.__name__, exc_info=True)
        return {"ok": False, "ms": round((time.monotonic() - started) * 1000, 1), "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def health_checks_run() -> dict:
    """Run every check concurrently; {"status": "ok"|"fail", "checks": {name: {...}}}."""
    timeout = settings.CURATOR_HEALTH_TIMEOUT
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="healthz")
    try:
        futures = {name: pool.submit(_timed, check) for name, check in CHECKS.items()}
        deadline = time.monotonic() + timeout
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = {"ok": False, "ms": round(timeout * 1000, 1), "error": f"timed out after {timeout} s"}
    finally:
        # A hung check is left to finish on its own; the answer does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)
    status = "ok" if all(r["ok"] for r in results.values()) else "fail"
    return {"status": status, "checks": results}


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    body = health_checks_run()
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)
