"""/healthz for load balancers: the real database, Redis and storage answer 200; an unreachable
broker or a broken storage answers 503 fast, naming the failed check and no secret."""

import json
import os
import subprocess
import sys
import time

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def get(**extra):
    return Client().get("/healthz", **extra)


def test_all_services_up_is_200_ok_without_a_login(media_root):
    response = get()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "storage"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert 0 <= check["ms"] < 2000
        assert "error" not in check
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    # The storage check cleans up after itself.
    assert not list((media_root / "healthz").glob("*"))


def test_redis_unreachable_is_503_naming_the_broker_and_no_secret(settings):
    settings.CELERY_BROKER_URL = "redis://:s3cret-password@127.0.0.1:1/0"  # nothing listens on port 1
    started = time.monotonic()
    response = get()
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["storage"]["ok"] is True
    text = json.dumps(body)
    assert "s3cret" not in text and "127.0.0.1" not in text


def test_a_storage_that_cannot_be_written_is_503(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.MEDIA_ROOT = blocker / "media"  # cannot be created, not even by root
    response = get()
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["storage"]["ok"] is False
    assert body["checks"]["storage"]["error"] in {"NotADirectoryError", "FileExistsError", "OSError"}
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_a_hung_check_answers_within_the_timeout(settings, monkeypatch):
    from curator import health

    settings.CURATOR_HEALTH_TIMEOUT = 0.5
    monkeypatch.setitem(health.CHECKS, "storage", lambda: time.sleep(3))
    started = time.monotonic()
    response = get()
    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == {"ok": False, "ms": 500.0, "error": "timed out after 0.5 s"}


def test_get_and_head_only():
    assert Client().head("/healthz").status_code == 200
    assert Client().post("/healthz").status_code == 405


def test_production_settings_exempt_it_from_the_https_redirect():
    """A balancer probes over plain HTTP inside the network: a 301 would read as "down"."""
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 50, "CURATOR_SSL_REDIRECT": "1", "CURATOR_TESTING": ""}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.SECURE_SSL_REDIRECT, settings.SECURE_REDIRECT_EXEMPT)",
        ],
        env={**env, "DJANGO_SETTINGS_MODULE": "curator.settings"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "True ['^healthz$']"
