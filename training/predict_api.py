"""`POST /api/v1/predict`: a photo in (multipart field `image`, or the raw body with an image
content type), every face's box, label and per-class probabilities out."""

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from curator.api_errors import ApiError, ErrorSerializer
from curator.throttling import PredictIPThrottle, PredictUserThrottle
from training import serving


class RawImageParser(BaseParser):
    """Accepts a raw image body (`image/*` or `application/octet-stream`); the view reads the
    bytes itself, this parser only tells DRF (and the schema) that such bodies are welcome."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return {}


class BoxSerializer(serializers.Serializer):
    left = serializers.IntegerField()
    top = serializers.IntegerField()
    right = serializers.IntegerField()
    bottom = serializers.IntegerField()


class FaceSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the face in the photo (largest detector order).")
    box = BoxSerializer(help_text="Detection box in the photo's pixels (after EXIF orientation).")
    label = serializers.CharField(help_text="The class with the highest probability.")
    confidence = serializers.FloatField(help_text="Probability of `label`.")
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Probability per class.")
    detector_score = serializers.FloatField(allow_null=True)


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField()
    dataset = serializers.IntegerField()
    architecture = serializers.CharField()
    classes = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()


class PredictResponseSerializer(serializers.Serializer):
    model_version = ModelVersionRefSerializer()
    image = inline_serializer(
        "PredictImage", {"width": serializers.IntegerField(), "height": serializers.IntegerField()}
    )
    faces = FaceSerializer(many=True, help_text="Empty when the photo has no face.")
    timings_ms = serializers.DictField(
        child=serializers.FloatField(), help_text="decode, load, detect_align, classify and total, in ms."
    )


class PredictUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="The photo (JPEG, PNG, WebP, ...).")
    model_version = serializers.IntegerField(required=False, help_text="A model version id (default: active).")
    dataset = serializers.IntegerField(required=False, help_text="Use this dataset's active model version.")


ERROR = ErrorSerializer


def api_error(exc: serving.PredictError) -> ApiError:
    return ApiError(str(exc), status=exc.status, code=exc.code)


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None and request.content_type.startswith("multipart/"):
        raw = request.data.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise serving.PredictError(f"`{name}` must be an integer id, not “{raw}”.", code="bad_parameter") from None


def read_image_bytes(request: Request) -> bytes:
    """The photo from a multipart field `image` (or `file`), or from the raw body."""
    if request.content_type.startswith("multipart/form-data"):
        upload = request.FILES.get("image") or request.FILES.get("file")
        if upload is None:
            raise serving.PredictError("Send the photo in the multipart field `image`.", code="no_image")
        if upload.size > settings.CURATOR_PREDICT_MAX_BYTES:
            raise serving.PredictError(
                f"The file is {upload.size:,} bytes, more than the limit of "
                f"{settings.CURATOR_PREDICT_MAX_BYTES:,} (CURATOR_PREDICT_MAX_BYTES).",
                status=413,
                code="too_large",
            )
        return upload.read()
    try:
        body = request.body
    except RequestDataTooBig:
        raise serving.PredictError(
            "The request body is larger than the server accepts for a raw upload; send it as multipart "
            "or a smaller image.",
            status=413,
            code="too_large",
        ) from None
    if not body:
        raise serving.PredictError(
            "No image: send it as the raw body (Content-Type: image/jpeg) or in the multipart field `image`.",
            code="no_image",
        )
    return body


class PredictView(APIView):
    parser_classes = [MultiPartParser, RawImageParser]
    # Per user and per client address (CURATOR_PREDICT_RATE, CURATOR_PREDICT_IP_RATE): 429 with
    # Retry-After in the API's error shape.
    throttle_classes = [PredictUserThrottle, PredictIPThrottle]

    @extend_schema(
        operation_id="predict",
        summary="Detect, align and classify every face of a photo",
        description=(
            "Send the photo as the raw request body (`Content-Type: image/jpeg`, `image/png`, ... or "
            "`application/octet-stream`) or as the multipart field `image`. Without `model_version` or "
            "`dataset` the active model of your only dataset with one is used. A photo without a face "
            "answers 200 with an empty `faces` list."
        ),
        parameters=[
            OpenApiParameter("model_version", int, description="Model version id (inactive ones: curators only)."),
            OpenApiParameter("dataset", int, description="Use the active model version of this dataset."),
        ],
        request={
            "multipart/form-data": PredictUploadSerializer,
            "image/*": OpenApiTypes.BINARY,
            "application/octet-stream": OpenApiTypes.BINARY,
        },
        responses={
            200: PredictResponseSerializer,
            400: OpenApiResponse(ERROR, description="No image in the request, or a bad parameter."),
            401: OpenApiResponse(description="No or a wrong token."),
            404: OpenApiResponse(ERROR, description="A dataset or model version you cannot see."),
            409: OpenApiResponse(ERROR, description="No active model, or an inactive version (non-curators)."),
            413: OpenApiResponse(ERROR, description="Too many bytes or pixels."),
            415: OpenApiResponse(ERROR, description="The body is not an image."),
            429: OpenApiResponse(ERROR, description="Too many requests; retry after `Retry-After` seconds."),
        },
        examples=[
            OpenApiExample(
                "One face",
                response_only=True,
                value={
                    "model_version": {
                        "id": 3,
                        "number": 2,
                        "dataset": 1,
                        "architecture": "embedding",
                        "classes": ["female", "male"],
                        "is_active": True,
                    },
                    "image": {"width": 640, "height": 480},
                    "faces": [
                        {
                            "index": 0,
                            "box": {"left": 251, "top": 140, "right": 390, "bottom": 279},
                            "label": "female",
                            "confidence": 0.97,
                            "probabilities": {"female": 0.97, "male": 0.03},
                            "detector_score": 1.8,
                        }
                    ],
                    "timings_ms": {"decode": 2.1, "load": 0.0, "detect_align": 21.0, "classify": 14.2, "total": 37.5},
                },
            )
        ],
        tags=["predict"],
    )
    def post(self, request: Request) -> Response:
        try:
            version = serving.model_version_for(
                user=request.user,
                dataset_id=_int_param(request, "dataset"),
                model_version_id=_int_param(request, "model_version"),
            )
            data = read_image_bytes(request)
            result = serving.image_predict(data=data, model_version=version)
        except serving.PredictError as exc:
            raise api_error(exc) from exc
        return Response(result.as_json())


class PredictAdd(APIView):
    """Store one predicted photo in the model version's dataset (curators only): its faces aligned
    as the dataset's imports are, the model's labels as suggestions, never as labels. The predict
    page's "Add to the dataset" posts here."""

    parser_classes = [MultiPartParser]
    throttle_classes = [PredictUserThrottle, PredictIPThrottle]

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT},
        responses={200: OpenApiTypes.OBJECT, 400: ErrorSerializer, 403: ErrorSerializer, 409: ErrorSerializer},
        summary="Add a predicted photo to the model's dataset",
    )
    def post(self, request):
        try:
            version_id = _int_param(request, "model_version")
            if version_id is None:
                raise serving.PredictError("Choose a model version.", code="no_model_version")
            version = serving.model_version_for(user=request.user, model_version_id=version_id)
            data = read_image_bytes(request)
            upload = request.FILES.get("image") or request.FILES.get("file")
            image = serving.predicted_photo_add(
                user=request.user, model_version=version, data=data, file_name=upload.name or ""
            )
        except serving.PredictError as exc:
            raise api_error(exc) from exc
        faces = list(image.faces.order_by("index").values("id", "index", "suggested_label"))
        return Response(
            {
                "image": image.pk,
                "dataset": image.dataset_id,
                "faces": faces,
                "message": f"Added to “{image.dataset.name}” with {len(faces)} face{'s' if len(faces) != 1 else ''}; "
                "the model's labels are stored as suggestions, not as labels.",
                "dataset_url": reverse("curator:dataset_detail", args=[image.dataset_id]),
            }
        )


# The API does its own authentication (token or session) and answers 401 rather than
# redirecting to the login page.
urlpatterns = [
    path("predict", login_not_required(PredictView.as_view()), name="api-predict"),
    path("predict/add", login_not_required(PredictAdd.as_view()), name="api-predict-add"),
]
