"""The predict page: choose, drop or photograph pictures, see every face boxed and classified
(the page's script calls POST /api/v1/predict with the session), and add a photo to the model's
dataset with the model's labels as suggestions (POST /api/v1/predict/add)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from curator.params import id_param
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
            "selected": id_param(selected),
            "api_url": reverse("api-predict"),
            "add_url": reverse("api-predict-add"),
            "max_bytes": settings.CURATOR_PREDICT_MAX_BYTES,
        },
    )
