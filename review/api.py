"""The review queues' JSON API, under /api/v1/ like every other (session or token, the API's one
error shape): a decision on a face of a queue, and undoing my last decision in a queue. The queue
pages' keys post here.

    POST /api/v1/datasets/<id>/review/decisions/  {"model_version"|"run": id, "queue": "disagreement",
                                                    "face": id, "version": n, "decision": "accepted", "label": ""}
    POST /api/v1/datasets/<id>/review/undo/        {"model_version"|"run": id, "queue": ...}
"""

from __future__ import annotations

from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from curator.models import Dataset, Face
from curator.permissions import can_annotate, get_dataset_for
from labeling.api import labeling_api_error
from labeling.services import InvalidChange, LabelingError
from review import selectors, services
from training import selectors as training_selectors


def whole_number(data: dict, name: str, *, required: bool = True) -> int | None:
    """An integer field of a request's data; InvalidChange with the reason otherwise."""
    raw = data.get(name)
    if raw in (None, ""):
        if required:
            raise InvalidChange(f"`{name}` is missing.")
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidChange(f"`{name}` must be a whole number, not “{raw}”.") from None


def _queue_target(dataset: Dataset, data: dict):
    """The model version or the out-of-fold run whose queue is meant (exactly one of them)."""
    version_id, run_id = whole_number(data, "model_version", required=False), whole_number(data, "run", required=False)
    if (version_id is None) == (run_id is None):
        raise InvalidChange("Give either `model_version` or `run`.")
    if version_id is not None:
        version = training_selectors.dataset_versions(dataset=dataset).filter(pk=version_id).first()
        if version is None:
            raise Http404("No such model version of this dataset.")
        return version, None
    run = training_selectors.dataset_runs(dataset=dataset).filter(pk=run_id).first()
    if run is None:
        raise Http404("No such out-of-fold run of this dataset.")
    return None, run


def _queue_name(data: dict) -> str:
    queue = str(data.get("queue") or selectors.DISAGREEMENT)
    if queue not in selectors.QUEUES:
        raise InvalidChange(f"Unknown queue “{queue}”: use {' or '.join(selectors.QUEUES)}.")
    return queue


def _face_state(face: Face) -> dict:
    from curator.colours import class_css

    return {
        "id": face.pk,
        "version": face.version,
        "label": face.label,
        "label_css": class_css(face.dataset.classes, face.label),  # the badge's class colour
        "is_unsure": face.is_unsure,
        "is_excluded": face.is_excluded,
    }


def _payload(request) -> dict:
    if not isinstance(request.data, dict):
        raise InvalidChange("The request body must be a JSON object.")
    return request.data


class ReviewDecision(APIView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, summary="Decide on a face of a queue")
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        if not can_annotate(request.user, dataset):
            raise PermissionDenied("Only people on this dataset may review it.")
        try:
            data = _payload(request)
            version, run = _queue_target(dataset, data)
            queue = _queue_name(data)
            decision = str(data.get("decision") or "")
            record = services.review_decide(
                user=request.user,
                dataset=dataset,
                face_id=whole_number(data, "face"),
                decision=selectors.DECISION_KEYS.get(decision, decision),
                model_version=version,
                run=run,
                expected_version=whole_number(data, "version", required=False),
                queue=queue,
                label=str(data.get("label") or ""),
            )
        except LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return Response(
            {
                "decision": record.decision,
                "decision_label": record.get_decision_display(),
                "face": _face_state(Face.objects.get(pk=record.face_id)),
                "progress": selectors.review_progress(model_version=version, run=run, queue=queue),
            }
        )


class ReviewUndo(APIView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, summary="Undo my last decision")
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        try:
            data = _payload(request)
            version, run = _queue_target(dataset, data)
            queue = _queue_name(data)
            record = services.review_undo_last(
                user=request.user, dataset=dataset, model_version=version, run=run, queue=queue
            )
        except LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return Response(
            {
                "face": _face_state(Face.objects.get(pk=record.face_id)),
                "undone": record.decision,
                "progress": selectors.review_progress(model_version=version, run=run, queue=queue),
            }
        )


urlpatterns = [
    path("datasets/<int:dataset_id>/review/decisions/", ReviewDecision.as_view(), name="api-review-decision"),
    path("datasets/<int:dataset_id>/review/undo/", ReviewUndo.as_view(), name="api-review-undo"),
]
