"""Everything under /api/v1/: each app adds its own routes in its `api_urls` module."""

from django.urls import include, path

urlpatterns = [
    path("", include("curator.api")),
    path("", include("labeling.api")),
    path("", include("training.api")),
    path("", include("training.predict_api")),
]
