"""Training under /api/v1/training/: queue, follow and cancel jobs; list, read and activate model
versions. Same rules as the pages: invisible datasets answer 404, only curators train or activate."""

from django.core.exceptions import PermissionDenied
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from curator.api_errors import ApiError
from curator.params import id_param
from curator.permissions import can_curate, get_dataset_for, visible_datasets
from training import guidance, selectors, services
from training.config import ConfigError, config_build
from training.data import TrainingDataError
from training.models import Architecture, ModelVersion, TrainingJob


class TrainingJobSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "dataset",
            "architecture",
            "config",
            "status",
            "phase",
            "epoch",
            "epochs",
            "batch",
            "batches_per_epoch",
            "history",
            "error",
            "timings",
            "cancel_requested",
            "keep_best_on_cancel",
            "created_at",
            "started_at",
            "finished_at",
            "model_version",
        ]

    def get_model_version(self, job) -> int | None:
        version = ModelVersion.objects.filter(job=job).only("pk").first()
        return version.pk if version else None


class TrainingJobCreateSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    architecture = serializers.ChoiceField(choices=Architecture.choices, default=Architecture.EMBEDDING)
    config = serializers.DictField(required=False, default=dict)
    # A cancelled job registers no version unless asked.
    keep_best_on_cancel = serializers.BooleanField(required=False, default=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "dataset",
            "job",
            "number",
            "architecture",
            "classes",
            "config",
            "tf_version",
            "keras_version",
            "metrics",
            "is_active",
            "artifact",
            "snapshot",
            "created_at",
        ]


def _dataset_filter(request, queryset):
    raw = request.query_params.get("dataset")
    if raw:
        dataset_id = id_param(raw)
        if dataset_id is None:
            raise ValidationError({"dataset": "must be a dataset id"})
        queryset = queryset.filter(dataset_id=dataset_id)
    return queryset


class TrainingJobList(ListAPIView):
    serializer_class = TrainingJobSerializer

    def get_queryset(self):
        jobs = TrainingJob.objects.filter(dataset__in=visible_datasets(self.request.user)).order_by("-created_at")
        return _dataset_filter(self.request, jobs)

    @extend_schema(request=TrainingJobCreateSerializer, responses={201: TrainingJobSerializer})
    def post(self, request):
        payload = TrainingJobCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        dataset = get_dataset_for(request.user, payload.validated_data["dataset"], curate=True)
        _check_choice(dataset, payload.validated_data["architecture"], payload.validated_data["config"])
        try:
            job = services.training_job_create(
                dataset=dataset,
                user=request.user,
                architecture=payload.validated_data["architecture"],
                config=payload.validated_data["config"],
                keep_best_on_cancel=payload.validated_data["keep_best_on_cancel"],
            )
        except ConfigError as exc:
            raise ValidationError({"config": exc.errors}) from exc
        except TrainingDataError as exc:
            raise ValidationError({"dataset": [str(exc)]}) from exc
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_201_CREATED)


def _check_choice(dataset, architecture: str, config: dict) -> None:
    """The train form's checks that need the dataset: an architecture its classes cannot use, and
    ensemble members that are not versions of this dataset."""
    why = guidance.architecture_unavailable(architecture=architecture, classes=list(dataset.classes))
    if why:
        raise ValidationError({"architecture": [why]})
    if architecture != Architecture.ENSEMBLE or not config.get("members"):
        return
    try:
        members = config_build(architecture, {"members": config["members"]})["members"]
    except ConfigError as exc:
        raise ValidationError({"config": exc.errors}) from exc
    own = set(ModelVersion.objects.filter(dataset=dataset, pk__in=members).values_list("pk", flat=True))
    strangers = [pk for pk in members if pk not in own]
    if strangers:
        raise ValidationError(
            {"config": {"members": f"not versions of this dataset: {', '.join(map(str, strangers))}"}}
        )


class TrainingJobDetail(RetrieveAPIView):
    serializer_class = TrainingJobSerializer

    def get_object(self):
        return selectors.job_for(self.request.user, self.kwargs["pk"])


class TrainingJobCancel(APIView):
    @extend_schema(request=None, responses={200: TrainingJobSerializer})
    def post(self, request, pk: int):
        job = selectors.job_for(request.user, pk)
        if not can_curate(request.user, job.dataset):
            raise PermissionDenied("Only curators of this dataset may cancel training.")
        # Without "keep_best" the choice made when the job was queued stands (off by default).
        asked = request.data.get("keep_best")
        keep_best = job.keep_best_on_cancel if asked is None else str(asked).lower() not in {"0", "false", "no", ""}
        job = services.training_job_cancel(job=job, keep_best=keep_best)
        return Response(TrainingJobSerializer(job).data)


class ModelVersionList(ListAPIView):
    serializer_class = ModelVersionSerializer

    def get_queryset(self):
        versions = ModelVersion.objects.filter(dataset__in=visible_datasets(self.request.user)).order_by(
            "dataset", "-number"
        )
        return _dataset_filter(self.request, versions)


class ModelVersionDetail(RetrieveAPIView):
    serializer_class = ModelVersionSerializer

    def get_object(self):
        return selectors.version_for(self.request.user, self.kwargs["pk"])


class ModelVersionActivate(APIView):
    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    def post(self, request, pk: int):
        version = selectors.version_for(request.user, pk)
        if not can_curate(request.user, version.dataset):
            raise PermissionDenied("Only curators of this dataset may activate a model version.")
        try:
            version = services.model_version_activate(model_version=version)
        except services.ActivationRefused as exc:
            raise ApiError(str(exc), status=409, code="activation_refused") from exc
        return Response(ModelVersionSerializer(version).data)


urlpatterns = [
    path("training/jobs/", TrainingJobList.as_view(), name="api-training-jobs"),
    path("training/jobs/<int:pk>/", TrainingJobDetail.as_view(), name="api-training-job"),
    path("training/jobs/<int:pk>/cancel/", TrainingJobCancel.as_view(), name="api-training-job-cancel"),
    path("training/versions/", ModelVersionList.as_view(), name="api-model-versions"),
    path("training/versions/<int:pk>/", ModelVersionDetail.as_view(), name="api-model-version"),
    path("training/versions/<int:pk>/activate/", ModelVersionActivate.as_view(), name="api-model-version-activate"),
]
