"""Review queues: the faces a model disputes (by plain disagreement of a model version, or by
confident learning over an out-of-fold run), the unlabelled faces a model is least sure about, and
the unlabelled faces a model version suggests a label for (pre-labels, most confident first).

Reads (the `*_queue`, `*_progress` selectors) and writes (`review_decide`, `review_undo_last`,
`active_label`) live together here because they share the queue's definition. Every label change
goes through `labeling.services.faces_update`, so it is a LabelEvent like any other, can be undone
and keeps `Prediction.disagrees` in step; the decision itself is a ReviewDecision, which takes the
face out of that version's (or run's) queue.

A model version has two queues that take decisions: its disputes (labelled faces whose label it
contradicts) and its suggestions (unlabelled faces it has a prediction for). A decision about a
face that was unlabelled when it was made (`label_before == ""`) belongs to the suggestions queue,
any other to the disputes queue; progress and undo keep the two apart that way. A suggestion is
never a label: only a person's key (or a curator's bulk accept, one recorded action) makes it one.
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
SUGGESTIONS = "suggestions"
RANKINGS = {
    DISAGREEMENT: "Model disagreement: faces whose label differs from the model version's prediction, "
    "most confident prediction first.",
    OUT_OF_FOLD: "Confident learning on out-of-fold probabilities: faces whose label the k-fold "
    "embedding models (which never saw them) find least likely, among those flagged as label issues.",
    SUGGESTIONS: "Suggestions: unlabelled, included faces the model version has a prediction for, most confident "
    "first. A suggestion is not a label until someone accepts it.",
}
QUEUES = (DISAGREEMENT, SUGGESTIONS)

# Key -> decision on the review page; class keys label faces in the active-learning and
# suggestions queues.
DECISION_KEYS = {"a": "accepted", "c": "confirmed", "x": "excluded", "u": "unsure"}
# In the suggestions queue a class key gives the face that label: "label" with the class.
LABEL = "label"


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


def suggestions_queue(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Unlabelled, included, not-unsure faces with a prediction of this version whose suggested
    label is a class of the dataset, that nobody decided on for this version yet; most confident
    first. (A face someone marked unsure keeps that human doubt: the queue does not offer it a
    one-key label.)"""
    decided = ReviewDecision.objects.filter(model_version=model_version, face=OuterRef("face"))
    return (
        Prediction.objects.filter(
            model_version=model_version,
            # Unlabelled faces never disagree; saying so lets PostgreSQL walk the
            # (model_version, disagrees, -confidence) index in order.
            disagrees=False,
            face__label="",
            face__is_excluded=False,
            face__is_unsure=False,
            predicted_label__in=list(model_version.dataset.classes),
        )
        .exclude(Exists(decided))
        .select_related("face", "face__image")
        .order_by("-confidence", "face_id")
    )


def suggestion_items(*, model_version: ModelVersion, limit: int = 60) -> list[QueueItem]:
    return [_prediction_item(row, model_version) for row in suggestions_queue(model_version=model_version)[:limit]]


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


def queue_decisions(*, model_version: ModelVersion, queue: str = DISAGREEMENT) -> QuerySet[ReviewDecision]:
    """The decisions taken in one of a version's queues (see the module's docstring)."""
    decisions = ReviewDecision.objects.filter(model_version=model_version)
    return decisions.filter(label_before="") if queue == SUGGESTIONS else decisions.exclude(label_before="")


def review_progress(
    *, model_version: ModelVersion | None = None, run: OutOfFoldRun | None = None, queue: str = DISAGREEMENT
) -> dict:
    """Remaining, reviewed (by decision) and labels changed by the review of a version's disputes
    or suggestions, or of a run."""
    if run is not None:
        decisions = ReviewDecision.objects.filter(out_of_fold_run=run)
        remaining = out_of_fold_queue(run=run).count()
        flagged = run.scores.filter(is_label_issue=True).count()
    else:
        decisions = queue_decisions(model_version=model_version, queue=queue)
        if queue == SUGGESTIONS:
            remaining = suggestions_queue(model_version=model_version).count()
        else:
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


def _changes_for(decision: str, *, face: Face, model_label: str, label: str = "") -> dict:
    if decision == ReviewDecision.Decision.ACCEPTED_MODEL:
        return {"label": model_label, "is_unsure": False}
    if decision == ReviewDecision.Decision.CONFIRMED_HUMAN:
        # Confirming says the label is right: a face marked unsure before is sure now. In the
        # suggestions queue the "human label" is the class the person just gave.
        return {"label": label or face.label, "is_unsure": False}
    if decision == ReviewDecision.Decision.EXCLUDED:
        return {"is_excluded": True}
    if decision == ReviewDecision.Decision.UNSURE:
        return {"is_unsure": True}
    raise ReviewError(f"Unknown decision “{decision}”: use accepted, confirmed, excluded or unsure.")


def _suggestion_decision(decision: str, *, dataset: Dataset, model_label: str, label: str) -> tuple[str, str]:
    """(decision, label to give) for a key of the suggestions queue. A class key gives that
    class: the suggestion accepted when it is the suggested one, the person's own label
    ("confirmed": the human label stands against the model) when it is another."""
    if decision == LABEL:
        if label not in dataset.classes:
            raise ReviewError(f"Unknown label “{label}”: this dataset's classes are {', '.join(dataset.classes)}.")
        if label == model_label:
            return ReviewDecision.Decision.ACCEPTED_MODEL, label
        return ReviewDecision.Decision.CONFIRMED_HUMAN, label
    if decision == ReviewDecision.Decision.CONFIRMED_HUMAN:
        raise ReviewError("An unlabelled face has no label to confirm: accept the suggestion or give a class.")
    return decision, ""


def _suggestion_note(decision: str, *, version: ModelVersion, model_label: str, confidence: float, label: str) -> str:
    suggestion = f"v{version.number}'s suggestion {model_label} ({confidence:.2f})"
    if decision == ReviewDecision.Decision.ACCEPTED_MODEL:
        return f"accepted {suggestion}"
    if decision == ReviewDecision.Decision.CONFIRMED_HUMAN:
        return f"labelled {label} against {suggestion}"
    if decision == ReviewDecision.Decision.EXCLUDED:
        return f"excluded instead of labelling ({suggestion})"
    return f"marked unsure instead of labelling ({suggestion})"


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
    queue: str = DISAGREEMENT,
    label: str = "",
) -> ReviewDecision:
    """Apply one key of a review page to one face: accept the model's label, confirm the human
    label, exclude, or mark unsure. The label change is a recorded action (kind "review"); the
    decision takes the face out of this version's (or run's) queue.

    In a version's suggestions queue (`queue="suggestions"`) the face must be unlabelled:
    "accepted" gives it the suggested label, "label" with `label` gives it that class, and the
    action's params say which suggestion of which version it came from.

    Raises ReviewError for a face not in the queue or a decision already made, and the labeling
    service's StaleFace when the face changed since the page showed it."""
    if (model_version is None) == (run is None):
        raise ReviewError("Review either a model version's disagreements or an out-of-fold run.")
    if queue not in QUEUES:
        raise ReviewError(f"Unknown queue “{queue}”: use {' or '.join(QUEUES)}.")
    if run is not None:
        if queue != DISAGREEMENT:
            raise ReviewError("An out-of-fold run has no suggestions queue.")
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
    note = ""
    if queue == SUGGESTIONS:
        if face.label:
            raise ReviewError(
                f"Face {face_id} is labelled {face.label} already: the suggestions queue is for unlabelled faces."
            )
        if face.is_excluded:
            raise ReviewError(f"Face {face_id} is excluded: the suggestions queue is for included faces.")
        decision, label = _suggestion_decision(
            decision, dataset=dataset, model_label=entry.predicted_label, label=str(label or "")
        )
        changes = _changes_for(decision, face=face, model_label=entry.predicted_label, label=label)
        note = _suggestion_note(
            decision, version=model_version, model_label=entry.predicted_label, confidence=entry.confidence, label=label
        )
    else:
        if run is None and not face.label:
            raise ReviewError(
                f"Face {face_id} is unlabelled, so v{model_version.number} disputes nothing: "
                "its suggestion is in the suggestions queue."
            )
        changes = _changes_for(decision, face=face, model_label=entry.predicted_label)
    label_before = face.label
    params = {
        "decision": decision,
        "model_version": model_version.pk if model_version else None,
        "out_of_fold_run": run.pk if run else None,
        "model_label": entry.predicted_label,
    }
    if queue == SUGGESTIONS:
        params.update(queue=SUGGESTIONS, model_version_number=model_version.number, suggestion=note)
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
    queue: str = DISAGREEMENT,
) -> ReviewDecision:
    """`z` on the review page: take back this person's latest decision in this queue, restoring
    what it changed (a later change by someone else is kept and reported as a conflict) and
    putting the face back in the queue."""
    if run is not None:
        decisions = ReviewDecision.objects.filter(out_of_fold_run=run)
    else:
        decisions = queue_decisions(model_version=model_version, queue=queue)
    record = decisions.filter(user=user, face__dataset=dataset).order_by("-created_at", "-id").first()
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


# --- Bulk accept of suggestions ------------------------------------------------------------------------


def _threshold(value) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ReviewError(f"The confidence threshold must be a number between 0 and 1, not “{value}”.") from None
    if not 0.0 <= threshold <= 1.0:  # NaN fails this too
        raise ReviewError(f"The confidence threshold must be between 0 and 1, not {value}.")
    return threshold


def suggestions_above(*, model_version: ModelVersion, min_confidence) -> QuerySet[Prediction]:
    """The suggestions of this version's queue at or above a confidence: what a bulk accept takes."""
    return suggestions_queue(model_version=model_version).filter(confidence__gte=_threshold(min_confidence))


def suggestions_accept_preview(*, model_version: ModelVersion, min_confidence) -> dict:
    """How many faces a bulk accept at this threshold would label, per suggested class."""
    rows = suggestions_above(model_version=model_version, min_confidence=min_confidence)
    per_class = dict(rows.values_list("predicted_label").annotate(n=Count("id")).order_by())
    return {
        "min_confidence": _threshold(min_confidence),
        "count": sum(per_class.values()),
        "per_class": [(name, per_class.get(name, 0)) for name in model_version.dataset.classes],
        "sample": list(rows[:24]),
    }


@transaction.atomic
def suggestions_accept_bulk(
    *,
    user: AbstractBaseUser,
    dataset: Dataset,
    model_version: ModelVersion,
    min_confidence,
    expected_count: int | None = None,
) -> BulkAction:
    """Give every face of the version's suggestions queue at or above `min_confidence` its
    suggested label, as ONE recorded action (kind "review"), so one revert in the history (or `z`
    in the grid) takes it all back and the faces return to the queue. No ReviewDecision is
    written: these faces leave the queue because they are labelled now, not because a person
    looked at each of them.

    `expected_count` is the count the person confirmed; a different count now (someone labelled
    faces meanwhile, or new predictions arrived) refuses the action and changes nothing."""
    if model_version.dataset_id != dataset.pk:
        raise ReviewError(f"Model version v{model_version.number} is not a model of this dataset.")
    threshold = _threshold(min_confidence)
    wanted = dict(
        suggestions_above(model_version=model_version, min_confidence=threshold).values_list(
            "face_id", "predicted_label"
        )
    )
    if expected_count is not None and len(wanted) != int(expected_count):
        raise ReviewError(
            f"{len(wanted)} suggestions are at or above {threshold:g} now, not the {expected_count} you confirmed; "
            "look at the preview again."
        )
    if not wanted:
        raise services.NoFaces(
            f"No suggestion of v{model_version.number} is at or above {threshold:g}: nothing changed."
        )
    # The labeling service's own path for per-face targets (as automatic splits use): lock the
    # rows, then write one event per face under one action. A face that changed between the
    # count and the lock (labelled, excluded, marked unsure) is left alone.
    rows = services._lock_rows(Face.objects.filter(dataset=dataset, pk__in=services._ids_in(wanted)))
    targets = {
        face_id: {"label": wanted[face_id]}
        for face_id, row in rows.items()
        if row.label == "" and not row.is_excluded and not row.is_unsure
    }
    if expected_count is not None and len(targets) != int(expected_count):
        raise ReviewError("Some of these faces changed a moment ago; look at the preview again.")
    params = {
        "queue": SUGGESTIONS,
        "decision": ReviewDecision.Decision.ACCEPTED_MODEL,
        "bulk": True,
        "model_version": model_version.pk,
        "model_version_number": model_version.number,
        "min_confidence": threshold,
        "suggestion": f"accepted v{model_version.number}'s suggestions at or above {threshold:g}",
    }
    action = services._new_action(user=user, dataset=dataset, kind=BulkAction.Kind.REVIEW, params=params)
    services._apply(action=action, rows=rows, targets=targets, split_manual=None)
    return action
