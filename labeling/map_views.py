"""The embedding map page: a 2-D projection of the dataset's face descriptors (computed in the
background by embeddings.maps), drawn by static/embeddings/map.js from the map API
(labeling/map_api.py). Here because it is coloured by predictions and metadata: embeddings sits
below labeling and may not read them."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from curator.permissions import get_dataset_for
from labeling import selectors
from labeling.extensions import prediction_provider


@require_GET
def dataset_map(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = get_dataset_for(request.user, dataset_id)
    return render(
        request,
        "labeling/map.html",
        {
            "dataset": dataset,
            "model_versions": prediction_provider().versions(dataset=dataset),
            "metadata_keys": selectors.metadata_keys(dataset=dataset),
        },
    )
