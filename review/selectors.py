"""Review queues, the reads: the faces a model disputes (by plain disagreement of a model
version, or by confident learning over an out-of-fold run), the unlabelled faces a model is least
sure about, and the unlabelled faces a model version suggests a label for (pre-labels, most
confident first); each queue's progress, and what a bulk accept of suggestions would take.
The writes (decisions, undo, bulk accept) are in `review.services`.

A model version has two queues that take decisions: its disputes (labelled faces whose label it
contradicts) and its suggestions (unlabelled faces it has a prediction for). A decision about a
face that was unlabelled when it was made (`label_before == ""`) belongs to the suggestions queue,
any other to the disputes queue; progress and undo keep the two apart that way.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, QuerySet

from curator.models import Face
from labeling.services import LabelingError
from review.models import ReviewDecision
from training import selectors as training_selectors
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


class ReviewError(LabelingError):
    pass


@dataclass
class QueueItem:
    face: Face
    predicted_label: str
    confidence: float  # of the predicted label
    probabilities: dict[str, float]
    score: float  # what the queue is ordered by, shown on the page
    given_label: str = ""


# --- Which faces are in a queue ---------------------------------------------------------------------


def disagreement_queue(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Labelled, included faces whose label differs from this version's prediction and that
    nobody decided on for this version yet; most confident disagreement first."""
    decided = ReviewDecision.objects.filter(model_version=model_version, face=OuterRef("face"))
    return (
        training_selectors.version_predictions(model_version=model_version)
        .filter(face__is_excluded=False)
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
        training_selectors.run_scores(run=run)
        .filter(is_label_issue=True, face__is_excluded=False)
        .filter(given_label=F("face__label"))
        .exclude(Exists(decided))
        .select_related("face", "face__image")
        .order_by("-issue_score", "face_id")
    )


def active_learning_queue(*, model_version: ModelVersion) -> QuerySet[Prediction]:
    """Unlabelled, included, not-unsure faces with a prediction of this version, least sure first
    (lowest probability of the most likely class)."""
    return (
        training_selectors.version_predictions(model_version=model_version)
        .filter(face__label="", face__is_excluded=False, face__is_unsure=False)
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
        training_selectors.version_predictions(model_version=model_version)
        .filter(
            # Unlabelled faces never disagree; saying so lets PostgreSQL walk the
            # (model_version, disagrees, confidence, face) index in order (backwards).
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


def active_items(*, model_version: ModelVersion, limit: int = 60, diverse: bool = False) -> list[QueueItem]:
    """The head of the least-sure queue; `diverse`: a diverse sample of it instead (below)."""
    if diverse:
        return diverse_active_items(model_version=model_version, limit=limit)
    return [_prediction_item(row, model_version) for row in active_learning_queue(model_version=model_version)[:limit]]


# Candidates a diverse sample picks from: this many times the faces shown, least sure first.
DIVERSE_POOL = 8


def diverse_active_items(*, model_version: ModelVersion, limit: int = 60) -> list[QueueItem]:
    """Least-sure faces picked greedily so that no two shown are near-duplicates (descriptor
    distance below embeddings.uniqueness.DIVERSE_MIN_DISTANCE): ten photos of one person from one
    shoot teach a model about as much as one, and a reviewer should not label them ten times.
    Faces without a descriptor yet are kept on their uncertainty alone."""
    import numpy as np

    from embeddings import selectors as embedding_selectors
    from embeddings.uniqueness import diverse_pick

    rows = list(active_learning_queue(model_version=model_version)[: limit * DIVERSE_POOL])
    ids = [row.face_id for row in rows]
    found, vectors = embedding_selectors.dataset_vectors(dataset=model_version.dataset, face_ids=ids)
    position = {int(face_id): k for k, face_id in enumerate(found)}
    matrix = np.full((len(ids), embedding_selectors.DIMENSIONS), np.nan, dtype=np.float32)
    for k, face_id in enumerate(ids):
        if face_id in position:
            matrix[k] = vectors[position[face_id]]
    picked = set(diverse_pick(ids, matrix, count=limit))
    return [_prediction_item(row, model_version) for row in rows if row.face_id in picked]


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
