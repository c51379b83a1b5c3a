"""Warming models at process start (curator/warmup.py): the registry runs every warmer of a role
even when one fails, the web role loads the active model versions before any request, and a
predict worker's pool process warms itself at start."""

from __future__ import annotations

import logging
import time

import pytest

from curator import warmup
from tests.training.predict_support import embedding_version, labelled_faces, photo_640x480


@pytest.fixture
def own_registry(monkeypatch):
    """An empty registry for the test (the apps' warmers stay registered outside it)."""
    monkeypatch.setattr(warmup, "_warmers", [])


def test_every_warmer_of_a_role_runs_and_a_failing_one_is_logged_not_raised(own_registry, caplog):
    ran = []

    def broken():
        raise RuntimeError("model file missing")

    def face_path():
        ran.append("face_path")

    def train_only():
        ran.append("train_only")

    warmup.warmer_register(broken, roles={"web"})
    warmup.warmer_register(face_path, roles={"web", "align"})
    warmup.warmer_register(face_path, roles={"web"})  # registering twice runs it once
    warmup.warmer_register(train_only, roles={"train"})
    with caplog.at_level(logging.WARNING, logger="curator.warmup"):
        report = warmup.warm({"web"})
    assert ran == ["face_path"]
    assert report[
        f"{__name__}.test_every_warmer_of_a_role_runs_and_a_failing_one_is_logged_not_raised.<locals>.broken"
    ] == ("failed: model file missing")
    assert "model file missing" in caplog.text


def test_warming_in_the_background_follows_the_setting(own_registry, settings):
    ran = []
    warmup.warmer_register(lambda: ran.append(1), roles={"web"})
    settings.CURATOR_WARM_AT_START = False
    assert warmup.warm_in_background({"web"}) is None
    settings.CURATOR_WARM_AT_START = True
    thread = warmup.warm_in_background({"web"})
    thread.join(timeout=60)
    assert ran == [1]


@pytest.mark.django_db
def test_the_web_role_loads_the_active_version_before_the_first_request(dataset, alice, media_root):
    from training import inference, serving

    labelled_faces(dataset)
    version = embedding_version(dataset, alice, predictions=False)
    serving._served.clear()
    inference.clear_cache()

    report = warmup.warm({"web"})

    assert all(not isinstance(v, str) for v in report.values()), report
    assert (version.pk, version.artifact) in serving._served
    # The first prediction finds it loaded and answers.
    assert serving.image_predict(data=photo_640x480("female"), model_version=version).faces


def test_a_predict_worker_warms_its_pool_process_at_start(start_worker):
    worker = start_worker(queues="predict", concurrency=1, CURATOR_WARM_AT_START="1")
    deadline = time.monotonic() + 120
    while "Warm-up of predict" not in worker.output():
        assert time.monotonic() < deadline, worker.output()[-3000:]
        time.sleep(0.2)
    line = next(line for line in worker.output().splitlines() if "Warm-up of predict" in line)
    assert "failed" not in line, line
    assert "_networks_warm" in line and "_face_path_warm" in line and "_active_versions_warm" in line
