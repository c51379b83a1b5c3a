"""Everything under /api/v1/: each app adds its own routes in its `api_urls` module; `/api/v1/`
itself answers with links to the endpoints."""

from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

ROOT_LINKS = {
    "datasets": "labeling-api-datasets",
    "training_jobs": "api-training-jobs",
    "model_versions": "api-model-versions",
    "predict": "api-predict",
    "schema": "api-schema",
    "docs": "api-docs",
}


class ApiRoot(APIView):
    """Links to the API's endpoints; like every API call it needs a token or a session."""

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Links to the API's endpoints")
    def get(self, request):
        return Response({key: reverse(name, request=request) for key, name in ROOT_LINKS.items()})


urlpatterns = [
    # DRF checks the token or session itself (401 in the API's error shape, not a login redirect).
    path("", login_not_required(ApiRoot.as_view()), name="api-root"),
    path("", include("labeling.api")),
    path("", include("labeling.map_api")),
    path("", include("training.api")),
    path("", include("training.predict_api")),
    path("", include("review.api")),
]
