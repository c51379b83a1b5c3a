"""Review queues: the faces a model disputes (by plain disagreement of a model version, or by
confident learning over an out-of-fold run) and the unlabelled faces a model is least sure about.

Reads (the `*_queue`, `*_progress` selectors) and writes (`review_decide`, `review_undo_last`,
`active_label`) live together here because they share the queue's definition. Every label change
goes through `labeling.services.faces_update`, so it is a LabelEvent like any other, can be undone
and keeps `Prediction.disagrees` in step; the decision itself is a ReviewDecision, which takes the
face out of that version's (or run's) queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, QuerySet

from curator.models import Dataset, Face
from labeling import services
from labeling.models import BulkAction, ReviewDecision
from training.models import ModelVersion, OutOfFoldRun, OutOfFoldScore, Prediction

DISAGREEMENT = "disagreement"
OUT_OF_FOLD = "out-of-fold"
RANKINGS = {
    DISAGREEMENT: "Model disagreement: faces whose label differs from the model version's prediction, "
    "most confident prediction first.",
    OUT_OF_FOLD: "Confident learning on out-of-fold probabilities: faces whose label the k-fold "
    "embedding models (which never saw them) find least likely, among those flagged as label issues.",
}

# Key -> decision on the review page; class keys label faces in the active-learning queue.
DECISION_KEYS = {"a": "accepted", "c": "confirmed", "x": "excluded", "u": "unsure"}


class ReviewError(services.LabelingError):
    pass


@dataclass
class QueueItem:
    face: Face
    predicted_label: str
    confidence: float  # of the predicted label
    probabilities: dict[str, float]
    score: float  # what the queue is ordered by, shown on the page
    given_label: str = ""

    @property
    def human_label(self) -> str:
        return self.face.label


# --- Which faces are in a queue ---------------------------------------------------------------------


def disagreement_queue(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Labelled, included faces whose label differs from this version's prediction and that
    nobody decided on for this version yet; most confident disagreement first."""
    decided = ReviewDecision.objects.filter(model_version=model_version, face=OuterRef("face"))
    return (
        Prediction.objects.filter(model_version=model_version, face__is_excluded=False)
        .exclude(face__label="")
        .exclude(predicted_label=F("face__label"))
        .exclude(Exists(decided))
        .select_related("face", "face__image")
        .order_by("-confidence", "face_id")
    )


def out_of_fold_queue(*, run: OutOfFoldRun) -> QuerySet[OutOfFoldScore]:
    """Label issues of a finished run, lowest self-confidence first; faces relabelled or excluded
    since the run, or decided on for it, have left."""
    decided = ReviewDecision.objects.filter(out_of_fold_run=run, face=OuterRef("face"))
    return (
        OutOfFoldScore.objects.filter(run=run, is_label_issue=True, face__is_excluded=False)
        .filter(given_label=F("face__label"))
        .exclude(Exists(decided))
        .select_related("face", "face__image")
        .order_by("-issue_score", "face_id")
    )


def active_learning_queue(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Unlabelled, included, not-unsure faces with a prediction of this version, least sure first
    (lowest probability of the most likely class)."""
    return (
        Prediction.objects.filter(
            model_version=model_version, face__label="", face__is_excluded=False, face__is_unsure=False
        )
        .select_related("face", "face__image")
        .order_by("confidence", "face_id")
    )


def _probabilities(classes: list[str], values: list[float]) -> dict[str, float]:
    return {name: float(p) for name, p in zip(classes, values, strict=False)}


def queue_items(*, model_version: ModelVersion | None = None, run: OutOfFoldRun | None = None, limit: int = 60):
    """The head of a dispute queue as QueueItems (one of model_version or run)."""
    if run is not None:
        rows = list(out_of_fold_queue(run=run)[:limit])
        items = []
        for row in rows:
            probs = _probabilities(run.classes, row.probabilities)
            items.append(
                QueueItem(
                    face=row.face,
                    predicted_label=row.predicted_label,
                    confidence=probs.get(row.predicted_label, 0.0),
                    probabilities=probs,
                    score=1.0 - row.issue_score,
                    given_label=row.given_label,
                )
            )
        return items
    assert model_version is not None
    rows = list(disagreement_queue(model_version=model_version)[:limit])
    return [_prediction_item(row, model_version) for row in rows]


def active_items(*, model_version: ModelVersion, limit: int = 60) -> list[QueueItem]:
    return [_prediction_item(row, model_version) for row in active_learning_queue(model_version=model_version)[:limit]]


def _prediction_item(row: Prediction, model_version: ModelVersion) -> QueueItem:
    return QueueItem(
        face=row.face,
        predicted_label=row.predicted_label,
        confidence=row.confidence,
        probabilities=_probabilities(model_version.classes, row.probabilities),
        score=row.confidence,
    )


# --- Progress and effect ----------------------------------------------------------------------------


def review_progress(*, model_version: ModelVersion | None = None, run: OutOfFoldRun | None = None) -> dict:
    """Remaining, reviewed (by decision) and labels changed by the review of a version or run."""
    if run is not None:
        decisions = ReviewDecision.objects.filter(out_of_fold_run=run)
        remaining = out_of_fold_queue(run=run).count()
        flagged = run.scores.filter(is_label_issue=True).count()
    else:
        decisions = ReviewDecision.objects.filter(model_version=model_version)
        remaining = disagreement_queue(model_version=model_version).count()
        flagged = None
    by_decision = dict(decisions.values_list("decision").annotate(n=Count("id")).order_by())
    reviewed = sum(by_decision.values())
    changed = decisions.exclude(label_after=F("label_before")).count()
    total = remaining + reviewed
    return {
        "remaining": remaining,
        "reviewed": reviewed,
        "total": total,
        "percent": round(100.0 * reviewed / total, 1) if total else 100.0,
        "accepted": by_decision.get(ReviewDecision.Decision.ACCEPTED_MODEL, 0),
        "confirmed": by_decision.get(ReviewDecision.Decision.CONFIRMED_HUMAN, 0),
        "excluded": by_decision.get(ReviewDecision.Decision.EXCLUDED, 0),
        "unsure": by_decision.get(ReviewDecision.Decision.UNSURE, 0),
        "labels_changed": changed,
        "flagged": flagged,
    }


# --- Decisions ----------------------------------------------------------------------------------------


def _changes_for(decision: str, *, face: Face, model_label: str) -> dict:
    if decision == ReviewDecision.Decision.ACCEPTED_MODEL:
        return {"label": model_label, "is_unsure": False}
    if decision == ReviewDecision.Decision.CONFIRMED_HUMAN:
        # Confirming says the label is right: a face marked unsure before is sure now.
        return {"label": face.label, "is_unsure": False}
    if decision == ReviewDecision.Decision.EXCLUDED:
        return {"is_excluded": True}
    if decision == ReviewDecision.Decision.UNSURE:
        return {"is_unsure": True}
    raise ReviewError(f"Unknown decision “{decision}”: use accepted, confirmed, excluded or unsure.")


@transaction.atomic
def review_decide(
    *,
    user: AbstractBaseUser,
    dataset: Dataset,
    face_id: int,
    decision: str,
    model_version: ModelVersion | None = None,
    run: OutOfFoldRun | None = None,
    expected_version: int | None = None,
) -> ReviewDecision:
    """Apply one key of the review page to one disputed face: accept the model's label, confirm
    the human label, exclude, or mark unsure. The label change is a recorded action (kind
    "review"); the decision takes the face out of this version's (or run's) queue.

    Raises ReviewError for a face not in the queue or a decision already made, and the labeling
    service's StaleFace when the face changed since the page showed it."""
    if (model_version is None) == (run is None):
        raise ReviewError("Review either a model version's disagreements or an out-of-fold run.")
    if run is not None:
        entry = OutOfFoldScore.objects.select_related("face").filter(run=run, face_id=face_id).first()
        if entry is None or not entry.is_label_issue:
            raise ReviewError(f"Face {face_id} is not in this out-of-fold run's queue.")
        decided = ReviewDecision.objects.filter(out_of_fold_run=run, face_id=face_id)
    else:
        entry = Prediction.objects.select_related("face").filter(model_version=model_version, face_id=face_id).first()
        if entry is None:
            raise ReviewError(f"Face {face_id} has no prediction of model version v{model_version.number}.")
        decided = ReviewDecision.objects.filter(model_version=model_version, face_id=face_id)
    face = entry.face
    if face.dataset_id != dataset.pk:
        raise ReviewError(f"Face {face_id} is not a face of this dataset.")
    if decided.exists():
        raise ReviewError(f"Face {face_id} was already reviewed for this queue.")
    changes = _changes_for(decision, face=face, model_label=entry.predicted_label)
    label_before = face.label
    params = {
        "decision": decision,
        "model_version": model_version.pk if model_version else None,
        "out_of_fold_run": run.pk if run else None,
        "model_label": entry.predicted_label,
    }
    action = services.faces_update(
        user=user,
        dataset=dataset,
        faces=[face.pk],
        changes=changes,
        kind=BulkAction.Kind.REVIEW,
        params=params,
        expected_versions={face.pk: expected_version} if expected_version is not None else None,
    )
    face.refresh_from_db(fields=["label"])
    record = ReviewDecision.objects.create(
        face=face,
        model_version=model_version,
        out_of_fold_run=run,
        decision=decision,
        label_before=label_before,
        label_after=face.label,
        user=user,
    )
    action.params = {**action.params, "review_decision": record.pk}
    action.save(update_fields=["params"])
    return record


@transaction.atomic
def review_undo_last(
    *,
    user: AbstractBaseUser,
    dataset: Dataset,
    model_version: ModelVersion | None = None,
    run: OutOfFoldRun | None = None,
) -> ReviewDecision:
    """`z` on the review page: take back this person's latest decision in this queue, restoring
    what it changed (a later change by someone else is kept and reported as a conflict) and
    putting the face back in the queue."""
    decisions = ReviewDecision.objects.filter(user=user, face__dataset=dataset)
    decisions = (
        decisions.filter(out_of_fold_run=run) if run is not None else decisions.filter(model_version=model_version)
    )
    record = decisions.order_by("-created_at", "-id").first()
    if record is None:
        raise services.NoFaces("Nothing to undo: you have made no decision in this queue.")
    action = (
        BulkAction.objects.filter(dataset=dataset, kind=BulkAction.Kind.REVIEW, params__review_decision=record.pk)
        .order_by("-id")
        .first()
    )
    if action is not None and action.face_count and not action.reverted_by.exists():
        result = services.bulk_action_revert(user=user, action=action, kind=BulkAction.Kind.UNDO)
        if result.conflicts:
            raise ReviewError(
                f"Face {record.face_id} changed again after your decision; undo that change first "
                "(the face's history shows it)."
            )
    record.delete()
    return record
