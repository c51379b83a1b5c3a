"""Out-of-fold label-issue runs: k-fold training of the fast `embedding` model (dlib descriptor of
the photo, with the pretrained network's logit for female/male datasets, + linear head) so every labelled face gets probabilities from a model that never saw it, ranked by
confident learning (Northcutt et al., "Confident Learning", JAIR 2021):

- per-class threshold t_j = mean probability of class j over the faces labelled j (the average
  self-confidence of that class);
- a face labelled i is a label issue when p_i < t_i (the model is less sure of its label than it
  usually is for that class) while some other class k has p_k >= t_k;
- issues are ranked by self-confidence p_i, lowest first (stored as issue_score = 1 - p_i).

The run is a background job on the `train` queue; its state lives in OutOfFoldRun so the page can
show it, and the stale-job sweep (curator.jobs) fails it when its worker is lost.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from curator.models import Dataset, Face
from training.models import JobStatus, OutOfFoldRun, OutOfFoldScore

logger = logging.getLogger(__name__)

MIN_FOLDS, MAX_FOLDS = 2, 10


class OutOfFoldError(ValueError):
    """A run that cannot start; the message is for the curator who asked."""


def out_of_fold_faces(*, dataset: Dataset):
    """The faces a run scores: labelled with one of the dataset's classes, not excluded, not unsure."""
    return (
        Face.objects.filter(dataset=dataset, is_excluded=False, is_unsure=False, label__in=list(dataset.classes))
        .order_by("id")
        .values_list("id", "label", "crop")
    )


def out_of_fold_run_start(*, user: AbstractBaseUser | None, dataset: Dataset, folds: int = 5) -> OutOfFoldRun:
    """Check the dataset can be split into `folds` folds, create the run and queue it."""
    try:
        folds = int(folds)
    except (TypeError, ValueError):
        raise OutOfFoldError(f"The number of folds must be a whole number, not “{folds}”.") from None
    if not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise OutOfFoldError(f"The number of folds must be between {MIN_FOLDS} and {MAX_FOLDS}.")
    counts: dict[str, int] = {}
    for _, label, _ in out_of_fold_faces(dataset=dataset):
        counts[label] = counts.get(label, 0) + 1
    present = {label: n for label, n in counts.items() if n > 0}
    if len(present) < 2:
        raise OutOfFoldError("Out-of-fold ranking needs labelled faces of at least two classes.")
    small = sorted(label for label, n in present.items() if n < folds)
    if small:
        raise OutOfFoldError(
            f"Every class needs at least {folds} labelled faces for {folds} folds; too few: {', '.join(small)}."
        )
    if OutOfFoldRun.objects.filter(dataset=dataset, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists():
        raise OutOfFoldError("An out-of-fold run of this dataset is already queued or running.")
    with transaction.atomic():
        run = OutOfFoldRun.objects.create(
            dataset=dataset,
            created_by=user if user is not None and user.is_authenticated else None,
            folds=folds,
            classes=[c for c in dataset.classes if c in present],
            progress={"stage": "queued", "faces": sum(present.values())},
        )

        def queue() -> None:
            from training.serving_tasks import out_of_fold_run_task

            out_of_fold_run_task.delay(run.pk)

        transaction.on_commit(queue)
    return run


def _progress(run: OutOfFoldRun, **values) -> None:
    run.progress = {**run.progress, **values}
    run.heartbeat_at = timezone.now()
    OutOfFoldRun.objects.filter(pk=run.pk).update(progress=run.progress, heartbeat_at=run.heartbeat_at)


def confident_learning(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Thresholds, label-issue flags, issue scores and confident predicted classes.

    probabilities: [N, C] out-of-fold; labels: [N] class indices."""
    n, c = probabilities.shape
    self_confidence = probabilities[np.arange(n), labels]
    thresholds = np.array(
        [probabilities[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(c)], dtype=np.float64
    )
    above = probabilities >= thresholds[None, :]
    other_above = above.copy()
    other_above[np.arange(n), labels] = False
    is_issue = (self_confidence < thresholds[labels]) & other_above.any(axis=1)
    # The confident class: the most probable among those above their threshold (argmax otherwise).
    masked = np.where(above, probabilities, -1.0)
    predicted = np.where(above.any(axis=1), masked.argmax(axis=1), probabilities.argmax(axis=1))
    return {
        "thresholds": thresholds,
        "self_confidence": self_confidence,
        "is_issue": is_issue,
        "issue_score": 1.0 - self_confidence,
        "predicted": predicted,
    }


def _fit_fold(x_train: np.ndarray, y_train: np.ndarray, fold: int):
    """The embedding model's linear head as a training job fits it (C by cross-validation inside
    this fold's training part), so every face is scored by a model that never saw it."""
    from training import engine

    return engine.linear_head_fit(x=x_train, y=y_train, seed=fold, balanced=True).model


def out_of_fold_run_execute(*, run_id: int) -> OutOfFoldRun:
    """Run all folds and store the scores (replacing any of an earlier attempt of this run)."""
    run = OutOfFoldRun.objects.select_related("dataset").get(pk=run_id)
    if run.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return run  # a duplicate delivery of a finished run
    started = time.monotonic()
    run.status = JobStatus.RUNNING
    run.heartbeat_at = timezone.now()
    run.started_at = run.started_at or run.heartbeat_at
    run.save(update_fields=["status", "heartbeat_at", "started_at"])
    try:
        _execute(run, started)
    except Exception as exc:  # the run's own record says what went wrong
        logger.exception("out-of-fold run %s failed", run.pk)
        OutOfFoldRun.objects.filter(pk=run.pk).update(
            status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        run.refresh_from_db()
        return run
    run.refresh_from_db()
    return run


def _execute(run: OutOfFoldRun, started: float) -> None:
    from sklearn.model_selection import StratifiedKFold

    from embeddings import pretrained
    from embeddings.descriptors import features_for_faces
    from embeddings.features import model_inputs

    rows = list(out_of_fold_faces(dataset=run.dataset).filter(label__in=run.classes))
    classes = list(run.classes)
    _progress(run, stage="descriptors", faces=len(rows), done=0)

    def on_descriptors(done: int, total: int) -> None:
        _progress(run, stage="descriptors", done=done, total=total)

    features = features_for_faces([fid for fid, _, _ in rows], progress=on_descriptors)
    rows = [row for row in rows if row[0] in features]  # photos that can no longer be read drop out
    index = {name: i for i, name in enumerate(classes)}
    labels = np.array([index[label] for _, label, _ in rows], dtype=np.int64)
    face_ids = [fid for fid, _, _ in rows]
    chosen = [features[fid] for fid in face_ids]
    use_pretrained = pretrained.classes_supported(classes) and all(f.pretrained is not None for f in chosen)
    x = model_inputs(chosen, use_pretrained=use_pretrained)
    probabilities = np.zeros((len(rows), len(classes)), dtype=np.float64)
    folds = StratifiedKFold(n_splits=run.folds, shuffle=True, random_state=0)
    for fold, (train_idx, test_idx) in enumerate(folds.split(x, labels)):
        _progress(run, stage="training", fold=fold + 1)
        model = _fit_fold(x[train_idx], labels[train_idx], fold + 1)
        probabilities[test_idx] = np.asarray(model(x[test_idx], training=False), dtype=np.float64)
    cl = confident_learning(probabilities, labels)
    scores = [
        OutOfFoldScore(
            run=run,
            face_id=fid,
            given_label=classes[labels[i]],
            probabilities=[round(float(p), 6) for p in probabilities[i]],
            predicted_label=classes[int(cl["predicted"][i])],
            is_label_issue=bool(cl["is_issue"][i]),
            issue_score=float(cl["issue_score"][i]),
        )
        for i, fid in enumerate(face_ids)
    ]
    accuracy = float((probabilities.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
    with transaction.atomic():
        OutOfFoldScore.objects.filter(run=run).delete()
        OutOfFoldScore.objects.bulk_create(scores, batch_size=2000)
        progress = {
            **run.progress,
            "stage": "done",
            "fold": run.folds,
            "faces": len(rows),
            "issues": int(cl["is_issue"].sum()),
            "thresholds": {classes[j]: round(float(t), 4) for j, t in enumerate(cl["thresholds"])},
            "oof_accuracy": round(accuracy, 4),
            "seconds": round(time.monotonic() - started, 1),
        }
        OutOfFoldRun.objects.filter(pk=run.pk).update(
            status=JobStatus.SUCCEEDED, progress=progress, finished_at=timezone.now(), heartbeat_at=timezone.now()
        )
