"""Out-of-fold label-issue runs: confident learning on known numbers, the checks before a run,
a whole run on a real Celery worker (train queue) over the fixture faces, and a lost worker."""

import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from curator.services.jobs import jobs_sweep_stale
from review import selectors as queues
from tests.training.predict_support import labelled_faces
from training.models import JobStatus, OutOfFoldRun, OutOfFoldScore
from training.out_of_fold import (
    OutOfFoldError,
    confident_learning,
    out_of_fold_run_start,
)


def test_confident_learning_thresholds_issues_and_ranking():
    probabilities = np.array(
        [
            [0.9, 0.1],  # labelled 0, sure: fine
            [0.8, 0.2],  # labelled 0, fine
            [0.1, 0.9],  # labelled 0, the model is sure it is 1: the worst issue
            [0.3, 0.7],  # labelled 0, below t0 and 1 above t1: an issue
            [0.2, 0.8],  # labelled 1, fine
            [0.3, 0.7],  # labelled 1, fine
            [0.45, 0.55],  # labelled 1, below t1 but 0 is below t0 too: not an issue
        ]
    )
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    result = confident_learning(probabilities, labels)
    # t0 = mean(0.9, 0.8, 0.1, 0.3) = 0.525, t1 = mean(0.8, 0.7, 0.55) = 0.6833
    assert result["thresholds"] == pytest.approx([0.525, 0.68333333])
    assert result["is_issue"].tolist() == [False, False, True, True, False, False, False]
    assert result["issue_score"][2] > result["issue_score"][3]
    assert result["predicted"].tolist()[:4] == [0, 0, 1, 1]


def test_a_run_needs_two_classes_enough_faces_and_sane_folds(dataset, alice):
    faces = labelled_faces(dataset)
    with pytest.raises(OutOfFoldError, match="between 2 and 10"):
        out_of_fold_run_start(user=alice, dataset=dataset, folds=11)
    with pytest.raises(OutOfFoldError, match="whole number"):
        out_of_fold_run_start(user=alice, dataset=dataset, folds="many")
    from curator.models import Face

    males = [f.pk for f in faces if f.label == "male"]
    Face.objects.filter(pk__in=males[3:]).update(is_excluded=True)
    with pytest.raises(OutOfFoldError, match="at least 5 labelled faces for 5 folds; too few: male"):
        out_of_fold_run_start(user=alice, dataset=dataset, folds=5)
    Face.objects.filter(pk__in=males).update(is_excluded=True)
    with pytest.raises(OutOfFoldError, match="at least two classes"):
        out_of_fold_run_start(user=alice, dataset=dataset)
    assert not OutOfFoldRun.objects.exists()


def test_only_curators_start_runs(client, dataset, alice, bob, charlie):
    labelled_faces(dataset)
    client.force_login(bob)
    assert client.post(f"/review/{dataset.pk}/runs/start", {"folds": 3}).status_code == 403
    client.force_login(charlie)
    assert client.post(f"/review/{dataset.pk}/runs/start", {"folds": 3}).status_code == 404
    assert not OutOfFoldRun.objects.exists()


def test_a_bad_fold_count_from_the_page_is_a_message(client, dataset, alice):
    labelled_faces(dataset)
    client.force_login(alice)
    response = client.post(f"/review/{dataset.pk}/runs/start", {"folds": 1}, follow=True)
    assert "between 2 and 10" in response.content.decode()
    assert not OutOfFoldRun.objects.exists()


def test_a_run_whose_worker_stopped_reporting_is_marked_failed(dataset, alice, settings):
    run = OutOfFoldRun.objects.create(
        dataset=dataset, status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=600)
    )
    settings.CURATOR_JOB_STALE_SECONDS = 120
    jobs_sweep_stale()  # the stale-job sweep, as Celery beat runs it
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "stopped reporting" in run.error


@pytest.mark.worker
def test_a_run_on_the_train_worker_scores_every_labelled_face(start_worker, client, dataset, alice):
    faces = labelled_faces(dataset)
    worker = start_worker(queues="train", concurrency=1)
    client.force_login(alice)
    response = client.post(f"/review/{dataset.pk}/runs/start", {"folds": 3})
    assert response.status_code == 302
    run = OutOfFoldRun.objects.get(dataset=dataset)
    assert run.folds == 3 and run.created_by == alice
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            break
        time.sleep(1)
    assert run.status == JobStatus.SUCCEEDED, f"{run.status} {run.error}\n{worker.output()[-3000:]}"
    scores = list(OutOfFoldScore.objects.filter(run=run))
    assert {s.face_id for s in scores} == {f.pk for f in faces}
    labels = {f.pk: f.label for f in faces}
    for score in scores:
        assert score.given_label == labels[score.face_id]
        assert sum(score.probabilities) == pytest.approx(1.0, abs=1e-4)
        given = run.classes.index(score.given_label)
        assert score.issue_score == pytest.approx(1 - score.probabilities[given], abs=1e-5)
    thresholds = run.progress["thresholds"]
    for score in scores:
        given = run.classes.index(score.given_label)
        below = score.probabilities[given] < thresholds[score.given_label] - 1e-4
        other_above = any(
            p >= thresholds[c] + 1e-4
            for i, (c, p) in enumerate(zip(run.classes, score.probabilities, strict=True))
            if i != given
        )
        if below and other_above:
            assert score.is_label_issue
        if score.is_label_issue:
            assert score.probabilities[given] <= thresholds[score.given_label] + 1e-4
    assert run.progress["issues"] == sum(s.is_label_issue for s in scores)
    assert 0.0 <= run.progress["oof_accuracy"] <= 1.0
    # The run's queue is the label issues, worst first; its page says which ranking it shows.
    queue = list(queues.out_of_fold_queue(run=run))
    assert [s.issue_score for s in queue] == sorted((s.issue_score for s in scores if s.is_label_issue), reverse=True)
    page = client.get(f"/review/{dataset.pk}/runs/{run.pk}/").content.decode()
    assert 'data-ranking="out-of-fold"' in page
    status = client.get(f"/review/{dataset.pk}/runs/{run.pk}/status").json()
    assert status["finished"] and status["status"] == "succeeded"
