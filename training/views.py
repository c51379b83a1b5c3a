"""Training pages: a dataset's jobs and versions, the job form, the live job page (progress,
curves, log, cancel), a version's evaluation, model card and activation, and the comparison of two versions.
Views parse, call a service or selector, and render; plots are SVG rendered here with matplotlib."""

import hashlib
import json
from urllib.parse import urlencode

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from curator.params import id_param
from curator.permissions import can_curate, get_dataset_for
from training import guidance, selectors, services
from training.config import ConfigError
from training.data import TrainingDataError
from training.evaluation import class_errors, with_intervals
from training.forms import TrainingJobForm
from training.models import Architecture, ModelVersion

VERSION_PLOTS = ("confusion", "calibration", "slices", "curves")


def _svg(content: bytes) -> HttpResponse:
    response = HttpResponse(content, content_type="image/svg+xml")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Cache-Control"] = "private, no-cache"
    return response


def dataset_training(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    versions = list(selectors.dataset_versions(dataset=dataset))
    return render(
        request,
        "training/dataset_training.html",
        {
            "dataset": dataset,
            "jobs": selectors.dataset_jobs(dataset=dataset)[:50],
            "versions": versions,
            "can_curate": can_curate(request.user, dataset),
        },
    )


@require_http_methods(["GET", "POST"])
def job_create(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id, curate=True)
    initial = {}
    if request.GET.get("architecture") in Architecture.values:  # "use this" links of the guidance table
        initial["architecture"] = request.GET["architecture"]
    form = TrainingJobForm(request.POST or None, dataset=dataset, initial=initial)
    advice = guidance.dataset_guidance(dataset=dataset)
    data_error = ""
    if request.method == "POST" and form.is_valid():
        architecture = form.cleaned_data["architecture"]
        try:
            job = services.training_job_create(
                dataset=dataset,
                user=request.user,
                architecture=architecture,
                config=form.cleaned_data["overrides"],
                keep_best_on_cancel=form.cleaned_data["keep_best_on_cancel"],
            )
        except TrainingDataError as exc:
            data_error = str(exc)
        except ConfigError as exc:  # the form checks the same rules; kept for a clear message anyway
            data_error = str(exc)
        else:
            # No "queued" message: the job page says Queued itself, and a banner would stay on
            # the page (which only refreshes its progress) after the job succeeded.
            warning = guidance.architecture_warning(architecture=architecture, n_faces=advice.n_faces)
            if warning:
                messages.warning(request, warning)
            return redirect("training:job_detail", job_id=job.pk)
    chosen = form["architecture"].value() or Architecture.EMBEDDING
    return render(
        request,
        "training/job_form.html",
        {
            "dataset": dataset,
            "form": form,
            "data_error": data_error,
            "guidance": advice,
            "chosen": chosen,
            "chosen_warning": chosen in advice.warn_architectures,
            "chosen_unavailable": advice.unavailable.get(chosen, ""),
            "form_script_data": {"warn": list(advice.warn_architectures), "unavailable": advice.unavailable},
        },
    )


def predictions_progress(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The dataset page's fragment for the active version's predictions (htmx; polls itself while
    new faces' predictions are computed)."""
    dataset = get_dataset_for(request.user, dataset_id)
    progress = selectors.active_predictions_progress(dataset=dataset)
    return render(request, "training/_predictions_progress.html", {"dataset": dataset, "progress": progress})


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_for(request.user, job_id)
    return render(
        request,
        "training/job_detail.html",
        {
            "dataset": job.dataset,
            "job": job,
            "progress": selectors.job_progress(job=job),
            "can_curate": can_curate(request.user, job.dataset),
        },
    )


def job_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """Polled by the job page (htmx) every two seconds; JSON for API clients and tests."""
    job = selectors.job_for(request.user, job_id)
    progress = selectors.job_progress(job=job)
    if request.headers.get("HX-Request"):
        return render(
            request,
            "training/_job_progress.html",
            {
                "dataset": job.dataset,
                "job": job,
                "progress": progress,
                "can_curate": can_curate(request.user, job.dataset),
            },
        )
    return JsonResponse(progress)


def job_curves(request: HttpRequest, job_id: int) -> HttpResponse:
    from training.plots import curves_svg

    job = selectors.job_for(request.user, job_id)
    return _svg(curves_svg(job.history))


@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_for(request.user, job_id)
    if not can_curate(request.user, job.dataset):
        raise PermissionDenied("Only curators of this dataset may cancel training.")
    # An unticked box sends nothing: no version unless the curator asks for one.
    job = services.training_job_cancel(job=job, keep_best=request.POST.get("keep_best") == "1")
    messages.info(request, "Cancel requested: the job stops after the current batch.")
    return redirect("training:job_detail", job_id=job.pk)


def grid_url(version: ModelVersion, **params: str) -> str:
    """The labeling grid of the version's dataset showing `params` (its predictions: model=<id>)."""
    base = reverse("labeling:grid", kwargs={"dataset_id": version.dataset_id})
    return f"{base}?{urlencode({'model': version.pk, **params}, safe=':')}"


def _test_grid(version: ModelVersion, **params: str) -> str:
    """Faces of the version's test split as it was evaluated (its snapshot), narrowed by params."""
    return grid_url(version, model_split="test", **params)


def _calibration_query(b: dict) -> dict:
    # As evaluation.evaluate bins: the first bin is [0, high], the others (low, high].
    lower = {"min_conf": "0"} if not b["low"] else {"conf_above": str(b["low"])}
    return {**lower, "max_conf": str(b["high"])}


def _drilldown_plots(version: ModelVersion, metrics: dict) -> list[tuple[str, str]]:
    """The evaluation plots as inline SVG whose cells, bars and bins link to the grid. Cached by
    the version and its metrics (they only change when the version is evaluated again)."""
    from training import plots

    digest = hashlib.sha1(json.dumps(metrics, sort_keys=True, default=str).encode()).hexdigest()[:16]
    key = f"training:drilldown:{version.pk}:{digest}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    out = []
    matrix = metrics.get("confusion_matrix")
    if matrix:
        classes = version.classes
        svg = plots.confusion_svg(
            matrix,
            classes,
            link=lambda i, j: _test_grid(version, model_label=classes[i], predicted=classes[j]),
            colours=selectors.version_class_colours(version=version),
        )
        out.append(("confusion", plots.inline(svg)))
    svg = plots.calibration_svg(
        metrics.get("calibration", []), link=lambda b: _test_grid(version, **_calibration_query(b))
    )
    out.append(("calibration", plots.inline(svg)))
    svg = plots.slices_svg(
        metrics.get("slices", {}),
        metrics.get("accuracy"),
        link=lambda kind, row: _test_grid(version, model_slice=f"{kind}:{row['value']}"),
    )
    out.append(("slices", plots.inline(svg)))
    cache.set(key, out, 3600)
    return out


def _slice_rows(version: ModelVersion, slices: dict) -> dict[str, list[dict]]:
    """Slice rows with the grid links of their test faces and of their errors."""
    out = {}
    for kind, rows in slices.items():
        out[kind] = []
        for r in rows:
            query = {"model_slice": f"{kind}:{r['value']}"}
            out[kind].append(
                {
                    **r,
                    "errors": r["n"] - round(r["accuracy"] * r["n"]),
                    "url": _test_grid(version, **query),
                    "errors_url": _test_grid(version, **query, model_correct="0"),
                }
            )
    return out


def _class_rows(version: ModelVersion, metrics: dict) -> list[dict]:
    """Per class: precision/recall and its false positives / negatives, linked to the grid."""
    errors = {e["class"]: e for e in class_errors(metrics.get("confusion_matrix") or [], version.classes)}
    rows = []
    for row in metrics.get("per_class", []):
        e = errors.get(row["class"], {})
        rows.append(
            {
                **row,
                "false_positives": e.get("false_positives"),
                "false_negatives": e.get("false_negatives"),
                "support_url": _test_grid(version, model_label=row["class"]),
                "fp_url": _test_grid(version, predicted=row["class"], model_correct="0"),
                "fn_url": _test_grid(version, model_label=row["class"], model_correct="0"),
            }
        )
    return rows


def version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    version = selectors.version_for(request.user, version_id)
    # Versions evaluated before intervals were stored get them computed from accuracy and n.
    metrics = with_intervals(version.metrics or {})
    others = selectors.dataset_versions(dataset=version.dataset).exclude(pk=version.pk)
    n_test, accuracy = metrics.get("n_test"), metrics.get("accuracy")
    return render(
        request,
        "training/version_detail.html",
        {
            "dataset": version.dataset,
            "version": version,
            "metrics": metrics,
            "per_class": _class_rows(version, metrics),
            "bias": metrics.get("bias", {}),
            "slices": _slice_rows(version, metrics.get("slices", {})),
            "plots": VERSION_PLOTS,
            "inline_plots": _drilldown_plots(version, metrics),
            "drill": {
                "has_snapshot": bool(version.snapshot),
                "test_url": _test_grid(version),
                "errors": n_test - round(accuracy * n_test)
                if isinstance(n_test, int) and accuracy is not None
                else None,
                "errors_url": _test_grid(version, model_correct="0"),
                "disputed": selectors.version_disputed_count(version=version),
                "disputed_url": grid_url(version, disagrees="1", excluded="0"),
            },
            "others": others,
            "members": selectors.ensemble_members(version=version),
            "settings": selectors.version_settings(version=version),
            "can_curate": can_curate(request.user, version.dataset),
        },
    )


def version_plot(request: HttpRequest, version_id: int, kind: str) -> HttpResponse:
    from training import plots

    version = selectors.version_for(request.user, version_id)
    svg = plots.version_plot_svg(
        kind,
        metrics=with_intervals(version.metrics or {}),
        classes=version.classes,
        colours=selectors.version_class_colours(version=version),
    )
    if svg is None:
        raise Http404("No such plot.")
    return _svg(svg)


def version_snapshot(request: HttpRequest, version_id: int) -> HttpResponse:
    """The frozen CSV of the faces, labels and splits the version was trained and tested on."""
    version = selectors.version_for(request.user, version_id)
    if not version.snapshot:
        raise Http404("This version has no snapshot.")
    try:
        handle = default_storage.open(version.snapshot, "rb")
    except (FileNotFoundError, OSError) as exc:
        raise Http404("The snapshot file is missing.") from exc
    return FileResponse(
        handle,
        content_type="text/csv",
        as_attachment=True,
        filename=f"{version.dataset.name}-v{version.number}-snapshot.csv",
    )


def version_model_card(request: HttpRequest, version_id: int) -> HttpResponse:
    """The version's model card: MODEL_CARD.md and its plots as SVG, in a zip."""
    from training.model_card import model_card_build

    card = model_card_build(version=selectors.version_for(request.user, version_id))
    response = HttpResponse(card.zip_bytes(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{card.zip_name}"'
    return response


def version_model_card_markdown(request: HttpRequest, version_id: int) -> HttpResponse:
    """The card's Markdown alone, its images linked to the version page's plot URLs (which need
    a login, as this file does)."""
    from training.model_card import model_card_build

    version = selectors.version_for(request.user, version_id)
    card = model_card_build(
        version=version,
        draw_plots=False,
        plot_url=lambda kind: request.build_absolute_uri(
            reverse("training:version_plot", kwargs={"version_id": version.pk, "kind": kind})
        ),
    )
    response = HttpResponse(card.markdown, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="model-card-v{version.number}.md"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_POST
def version_activate(request: HttpRequest, version_id: int) -> HttpResponse:
    version = selectors.version_for(request.user, version_id)
    if not can_curate(request.user, version.dataset):
        raise PermissionDenied("Only curators of this dataset may activate a model version.")
    if request.POST.get("deactivate"):
        services.model_version_deactivate(model_version=version)
        messages.success(request, f"Version {version.number} is no longer active.")
    else:
        try:
            services.model_version_activate(model_version=version)
        except services.ActivationRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Version {version.number} is now the active model of {version.dataset.name}.")
    # One click from the job page or the models table returns there.
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=False):
        return redirect(back)
    return redirect("training:version_detail", version_id=version.pk)


@require_POST
def version_predict(request: HttpRequest, version_id: int) -> HttpResponse:
    """Queue predictions of every face of the dataset (faces imported since training included)."""
    version = selectors.version_for(request.user, version_id)
    if not can_curate(request.user, version.dataset):
        raise PermissionDenied("Only curators of this dataset may recompute predictions.")
    services.predictions_queue(model_version=version)
    messages.success(request, f"Predictions of version {version.number} for every face are being computed.")
    return redirect("training:version_detail", version_id=version.pk)


def version_compare(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    versions = selectors.dataset_versions(dataset=dataset)
    context = {"dataset": dataset, "versions": versions, "a": None, "b": None}
    a_id, b_id = request.GET.get("a"), request.GET.get("b")
    if a_id and b_id:
        a_pk, b_pk = id_param(a_id), id_param(b_id)
        if a_pk is None or b_pk is None:
            raise Http404("No such version.")
        a = get_object_or_404(ModelVersion, dataset=dataset, pk=a_pk)
        b = get_object_or_404(ModelVersion, dataset=dataset, pk=b_pk)
        comparison = selectors.versions_compare(a=a, b=b)
        # Counts of faces link to the grid of exactly those faces, per version.
        for row in comparison["metric_rows"]:
            if "grid" in row:
                row["a_url"] = grid_url(a, **row["grid"])
                row["b_url"] = grid_url(b, **row["grid"])
        context.update(a=a, b=b, comparison=comparison, differ_url=grid_url(a, differs_from=str(b.pk)))
    return render(request, "training/compare.html", context)
