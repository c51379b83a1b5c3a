"""Review queues, the writes: one key of a review page (`review_decide`), its undo
(`review_undo_last`) and the bulk accept of a version's suggestions. The queues themselves are
read by `review.selectors`.

Every label change goes through `labeling.services`, so it is a LabelEvent like any other, can be
undone and keeps `Prediction.disagrees` in step (training listens to labeling's `labels_changed`);
the decision itself is a ReviewDecision, which takes the face out of that version's (or run's)
queue. A suggestion is never a label: only a person's key (or a curator's bulk accept, one
recorded action) makes it one.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from curator.models import Dataset, Face
from labeling import services
from labeling.models import BulkAction
from review.models import ReviewDecision
from review.selectors import (
    DISAGREEMENT,
    LABEL,
    QUEUES,
    SUGGESTIONS,
    ReviewError,
    _threshold,
    queue_decisions,
    suggestions_above,
)
from training import selectors as training_selectors
from training.models import ModelVersion, OutOfFoldRun

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
        entry = training_selectors.run_scores(run=run).select_related("face").filter(face_id=face_id).first()
        if entry is None or not entry.is_label_issue:
            raise ReviewError(f"Face {face_id} is not in this out-of-fold run's queue.")
        decided = ReviewDecision.objects.filter(out_of_fold_run=run, face_id=face_id)
    else:
        entry = (
            training_selectors.version_predictions(model_version=model_version)
            .select_related("face")
            .filter(face_id=face_id)
            .first()
        )
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
