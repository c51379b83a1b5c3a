"""Review pages: the queue of faces a model version (or an out-of-fold run) disputes, the
active-learning queue of unlabelled faces, a version's suggestions (pre-labels) with one-key and
bulk accept, starting out-of-fold runs and one-click retraining.
Views parse, check the role, call review / training selectors and services and render; the queue
pages' keys post to the review API (review/api.py)."""

from __future__ import annotations

import json
from http import HTTPStatus

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from curator.models import Dataset
from curator.permissions import can_annotate, can_curate, get_dataset_for
from labeling.keys import class_keys_for
from labeling.services import LabelingError
from review import selectors, services
from review.api import whole_number
from training import selectors as training_selectors
from training import services as training_services
from training.models import Architecture, JobStatus, ModelVersion, OutOfFoldRun, TrainingJob


def _version(dataset: Dataset, version_id: int) -> ModelVersion:
    return get_object_or_404(ModelVersion, dataset=dataset, pk=version_id)


def _run(dataset: Dataset, run_id: int) -> OutOfFoldRun:
    return get_object_or_404(OutOfFoldRun, dataset=dataset, pk=run_id)


def index(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    versions = []
    for version in training_selectors.dataset_versions(dataset=dataset).select_related("dataset"):
        versions.append(
            {
                "version": version,
                "disputed": selectors.disagreement_queue(model_version=version).count(),
                "unlabelled": selectors.active_learning_queue(model_version=version).count(),
                "suggestions": selectors.suggestions_queue(model_version=version).count(),
                "reviewed": selectors.queue_decisions(model_version=version).count(),
                "pretrained": version.architecture == Architecture.PRETRAINED,
            }
        )
    runs = []
    for run in training_selectors.dataset_runs(dataset=dataset)[:10]:
        runs.append(
            {
                "run": run,
                "remaining": selectors.out_of_fold_queue(run=run).count()
                if run.status == JobStatus.SUCCEEDED
                else None,
            }
        )
    return render(
        request,
        "review/index.html",
        {
            "dataset": dataset,
            "versions": versions,
            # Pre-labels of a pretrained model are useful before anyone has labelled a face:
            # the index offers them first.
            "pretrained": [row for row in versions if row["pretrained"] and row["suggestions"]],
            "runs": runs,
            "can_curate": can_curate(request.user, dataset),
            "rankings": selectors.RANKINGS,
        },
    )


# --- The dispute queue ------------------------------------------------------------------------------


def _queue_context(request: HttpRequest, dataset: Dataset, *, version=None, run=None) -> dict:
    items = selectors.queue_items(model_version=version, run=run)
    return {
        "dataset": dataset,
        "version": version,
        "run": run,
        "ranking": selectors.OUT_OF_FOLD if run else selectors.DISAGREEMENT,
        "ranking_text": selectors.RANKINGS[selectors.OUT_OF_FOLD if run else selectors.DISAGREEMENT],
        "items": items,
        "progress": selectors.review_progress(model_version=version, run=run),
        "can_curate": can_curate(request.user, dataset),
        "decide_url": reverse("api-review-decision", args=[dataset.pk]),
        "undo_url": reverse("api-review-undo", args=[dataset.pk]),
        "comparison": _comparison(version) if version is not None else None,
    }


@require_GET
def version_queue(request: HttpRequest, dataset_id: int, version_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    version = _version(dataset, version_id)
    return render(request, "review/queue.html", _queue_context(request, dataset, version=version))


@require_GET
def run_queue(request: HttpRequest, dataset_id: int, run_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    run = _run(dataset, run_id)
    if run.status != JobStatus.SUCCEEDED:
        messages.error(
            request, f"Out-of-fold run {run.pk} is {run.get_status_display().lower()}; its queue is not ready."
        )
        return redirect("review:index", dataset_id=dataset.pk)
    return render(request, "review/queue.html", _queue_context(request, dataset, run=run))


# --- Active learning ----------------------------------------------------------------------------------


@require_GET
def active_queue(request: HttpRequest, dataset_id: int, version_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    version = _version(dataset, version_id)
    keys = class_keys_for(dataset)
    return render(
        request,
        "review/active.html",
        {
            "dataset": dataset,
            "version": version,
            "items": selectors.active_items(model_version=version, diverse=request.GET.get("diverse") == "1"),
            "diverse": request.GET.get("diverse") == "1",
            "remaining": selectors.active_learning_queue(model_version=version).count(),
            "keys": keys,
            "keys_json": json.dumps(keys),
        },
    )


# --- Suggestions (pre-labels) ---------------------------------------------------------------------------

DEFAULT_BULK_THRESHOLD = 0.95


@require_GET
def suggestions(request: HttpRequest, dataset_id: int, version_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    version = _version(dataset, version_id)
    keys = class_keys_for(dataset)
    return render(
        request,
        "review/suggestions.html",
        {
            "dataset": dataset,
            "version": version,
            "items": selectors.suggestion_items(model_version=version),
            "progress": selectors.review_progress(model_version=version, queue=selectors.SUGGESTIONS),
            "ranking_text": selectors.RANKINGS[selectors.SUGGESTIONS],
            "keys": keys,
            "keys_json": json.dumps(keys),
            "foreign_classes": [c for c in version.classes if c not in dataset.classes],
            "can_annotate": can_annotate(request.user, dataset),
            "can_curate": can_curate(request.user, dataset),
            "default_threshold": DEFAULT_BULK_THRESHOLD,
            "decide_url": reverse("api-review-decision", args=[dataset.pk]),
            "undo_url": reverse("api-review-undo", args=[dataset.pk]),
        },
    )


def suggestions_accept(request: HttpRequest, dataset_id: int, version_id: int) -> HttpResponse:
    """GET: how many suggestions at or above `min_confidence` a bulk accept would label, per
    class, with a sample, and a confirm button. POST (with the count shown): do it, as one
    recorded action. Curators only: like the exclusion rules it changes many faces no person
    looked at one by one."""
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    version = _version(dataset, version_id)
    queue_url = reverse("review:suggestions", args=[dataset.pk, version.pk])
    if request.method == "POST":
        try:
            expected = whole_number(request.POST.dict(), "expected_count")
            action = services.suggestions_accept_bulk(
                user=request.user,
                dataset=dataset,
                model_version=version,
                min_confidence=request.POST.get("min_confidence"),
                expected_count=expected,
            )
        except LabelingError as exc:
            messages.error(request, f"Nothing accepted: {exc.message}")
            return redirect(queue_url)
        messages.success(
            request,
            f"Accepted {action.face_count} suggestion{'s' if action.face_count != 1 else ''} of v{version.number} "
            f"as labels: action #{action.pk} in the history, where reverting it takes them all back.",
        )
        return redirect(queue_url)
    if request.method != "GET":
        return HttpResponse(status=HTTPStatus.METHOD_NOT_ALLOWED)
    raw = request.GET.get("min_confidence") or str(DEFAULT_BULK_THRESHOLD)
    try:
        preview = selectors.suggestions_accept_preview(model_version=version, min_confidence=raw)
    except selectors.ReviewError as exc:
        messages.error(request, exc.message)
        return redirect(queue_url)
    return render(
        request,
        "review/suggestions_accept.html",
        {
            "dataset": dataset,
            "version": version,
            "preview": preview,
            "queue_url": queue_url,
        },
    )


# --- Out-of-fold runs -----------------------------------------------------------------------------------


@require_POST
def run_start(request: HttpRequest, dataset_id: int) -> HttpResponse:
    from training.out_of_fold import OutOfFoldError, out_of_fold_run_start

    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    try:
        run = out_of_fold_run_start(user=request.user, dataset=dataset, folds=request.POST.get("folds") or 5)
    except OutOfFoldError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Out-of-fold run {run.pk} queued ({run.folds} folds of the embedding model).")
    return redirect("review:index", dataset_id=dataset.pk)


@require_GET
def run_status(request: HttpRequest, dataset_id: int, run_id: int) -> JsonResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    run = _run(dataset, run_id)
    return JsonResponse(
        {
            "id": run.pk,
            "status": run.status,
            "progress": run.progress,
            "error": run.error,
            "finished": run.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED),
        }
    )


# --- Retrain with the same config --------------------------------------------------------------------


def _comparison(version: ModelVersion) -> dict:
    """The latest retrain of this version and, once it finished, both evaluations side by side."""
    job, new_version = training_selectors.version_latest_retrain(version=version)
    rows = []
    if new_version is not None:
        for key, name in (
            ("accuracy", "Test accuracy"),
            ("balanced_accuracy", "Balanced accuracy"),
            ("roc_auc", "ROC AUC"),
            ("ece", "Calibration error (ECE)"),
            ("n_test", "Test faces"),
        ):
            before, after = _metric(version, key), _metric(new_version, key)
            if before is not None or after is not None:
                rows.append({"name": name, "before": before, "after": after})
    return {"job": job, "job_url": _job_url(job), "new_version": new_version, "rows": rows}


def _job_url(job: TrainingJob | None) -> str:
    """The training job page, when the training app has one under this name."""
    if job is None:
        return ""
    try:
        return reverse("training:job_detail", args=[job.dataset_id, job.pk])
    except NoReverseMatch:
        try:
            return reverse("training:job_detail", args=[job.pk])
        except NoReverseMatch:
            return ""


def _metric(version: ModelVersion, key: str):
    metrics = version.metrics or {}
    value = metrics.get(key)
    if value is None and isinstance(metrics.get("test"), dict):
        value = metrics["test"].get(key)
    return value


@require_POST
def retrain(request: HttpRequest, dataset_id: int, version_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    version = _version(dataset, version_id)
    try:
        job = training_services.version_retrain(version=version, user=request.user)
    except ValueError as exc:  # the training service's refusals (too few faces, bad config, ...)
        messages.error(request, f"Not retrained: {exc}")
    else:
        messages.success(request, f"Retraining from v{version.number}'s settings as training job {job.pk}.")
    return redirect("review:version_queue", dataset_id=dataset.pk, version_id=version.pk)
