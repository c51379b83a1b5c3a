"""Embeddings' pages, under /embeddings/ (curator/urls.py includes this module by name, so curator
never imports embeddings). The map and similarity pages add their routes here."""

from django.urls import path

from embeddings import views

app_name = "embeddings"
urlpatterns = [
    path("<int:dataset_id>/progress/", views.descriptor_progress, name="progress"),
]
