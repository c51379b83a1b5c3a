"""The predict page: choose, drop or photograph pictures, see every face boxed and classified
(the page's script calls POST /api/v1/predict with the session), and add a photo to the model's
dataset with the model's labels as suggestions."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from curator.permissions import can_curate
from training import serving


@require_GET
def predict_page(request: HttpRequest) -> HttpResponse:
    rows = serving.datasets_with_models(user=request.user)
    choices = []
    for dataset, versions in rows:
        curate = can_curate(request.user, dataset)
        for version in versions:
            choices.append(
                {
                    "id": version.pk,
                    "dataset": dataset,
                    "version": version,
                    "can_add": curate,
                }
            )
    selected = request.GET.get("model_version")
    return render(
        request,
        "training/predict.html",
        {
            "choices": choices,
            "selected": int(selected) if selected and selected.isdigit() else None,
            "api_url": reverse("api-predict"),
            "add_url": reverse("predict:add"),
            "max_bytes": settings.CURATOR_PREDICT_MAX_BYTES,
        },
    )


@require_POST
def predict_add(request: HttpRequest) -> JsonResponse:
    """Store one predicted photo in the model version's dataset (curators only)."""
    upload = request.FILES.get("image")
    raw_version = request.POST.get("model_version", "")
    if upload is None:
        return JsonResponse({"ok": False, "error": "Send the photo in the field `image`."}, status=400)
    if not raw_version.isdigit():
        return JsonResponse({"ok": False, "error": "Choose a model version."}, status=400)
    try:
        version = serving.model_version_for(user=request.user, model_version_id=int(raw_version))
        if upload.size > settings.CURATOR_PREDICT_MAX_BYTES:
            raise serving.PredictError(
                f"The file is {upload.size:,} bytes, more than the limit of {settings.CURATOR_PREDICT_MAX_BYTES:,}.",
                status=413,
                code="too_large",
            )
        image = serving.predicted_photo_add(
            user=request.user, model_version=version, data=upload.read(), file_name=upload.name or ""
        )
    except PermissionDenied as exc:
        return JsonResponse({"ok": False, "error": str(exc) or "Only curators may add photos."}, status=403)
    except serving.PredictError as exc:
        return JsonResponse({"ok": False, "error": str(exc), "code": exc.code}, status=exc.status)
    faces = list(image.faces.order_by("index").values("id", "index", "suggested_label"))
    return JsonResponse(
        {
            "ok": True,
            "image": image.pk,
            "dataset": image.dataset_id,
            "faces": faces,
            "message": f"Added to “{image.dataset.name}” with {len(faces)} face{'s' if len(faces) != 1 else ''}; "
            "the model's labels are stored as suggestions, not as labels.",
            "dataset_url": reverse("curator:dataset_detail", args=[image.dataset_id]),
        }
    )
