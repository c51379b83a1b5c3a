"""Embeddings' views: thin, reads through embeddings.selectors."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from curator.permissions import get_dataset_for
from embeddings import selectors


@require_GET
def descriptor_progress(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The dataset page's descriptor progress, an htmx fragment that polls itself while batches run."""
    dataset = get_dataset_for(request.user, dataset_id)
    progress = selectors.descriptor_progress(dataset=dataset)
    return render(request, "embeddings/_progress.html", {"dataset": dataset, "progress": progress})
