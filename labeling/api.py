"""REST API for labeling, under /api/v1/: datasets, faces (filterable exactly as the grid),
label changes (with optimistic concurrency), undo, history and revert, splits, rules and
exports. Every endpoint checks dataset visibility (404 for datasets you are not on) and the
curator role where needed (403)."""

from __future__ import annotations

from django.contrib import messages
from django.http import QueryDict
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from curator.api_errors import ApiError
from curator.models import Face
from curator.params import id_param
from curator.permissions import can_curate, get_dataset_for, visible_datasets
from labeling import filters, selectors, services
from labeling.models import BulkAction, LabelEvent


class LabelingDatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    classes = serializers.ListField(child=serializers.CharField())
    class_keys = serializers.DictField(child=serializers.CharField())
    min_faces_per_class = serializers.IntegerField()
    faces = serializers.IntegerField(required=False)
    can_curate = serializers.BooleanField(required=False)


class GridFaceSerializer(serializers.ModelSerializer):
    source_image = serializers.CharField(source="image.original_name")
    metadata = serializers.JSONField(source="image.metadata")
    crop_url = serializers.SerializerMethodField()
    predicted_label = serializers.SerializerMethodField()
    confidence = serializers.SerializerMethodField()

    class Meta:
        model = Face
        fields = [
            "id",
            "version",
            "label",
            "label_origin",
            "is_unsure",
            "is_excluded",
            "exclusion_reason",
            "split",
            "split_manual",
            "image",
            "source_image",
            "index",
            "crop",
            "crop_url",
            "box_left",
            "box_top",
            "box_right",
            "box_bottom",
            "size_px",
            "sharpness",
            "yaw",
            "roll",
            "detector_score",
            "landmark_fit",
            "phash",
            "whole_image",
            "metadata",
            "predicted_label",
            "confidence",
        ]

    def get_crop_url(self, face) -> str:
        return f"/media/{face.crop}"

    def get_predicted_label(self, face) -> str | None:
        return getattr(face, "pred_label", None)

    def get_confidence(self, face) -> float | None:
        return getattr(face, "pred_confidence", None)


class FaceLabelEventSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None)

    class Meta:
        model = LabelEvent
        fields = ["id", "action", "field", "old_value", "new_value", "user", "created_at"]


class BulkActionSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", default=None)

    class Meta:
        model = BulkAction
        fields = ["id", "kind", "user", "params", "face_count", "reverts", "created_at"]


class LabelChangeSerializer(serializers.Serializer):
    faces = serializers.ListField(child=serializers.IntegerField(), required=False)
    versions = serializers.DictField(child=serializers.IntegerField(), required=False)
    filter = serializers.CharField(
        required=False, allow_blank=True, help_text="A grid query string; changes every matching face."
    )
    expected_count = serializers.IntegerField(required=False)
    changes = serializers.DictField(help_text="Any of label, is_unsure, is_excluded, split.")
    flash = serializers.BooleanField(
        required=False, default=False, help_text="Browser (session) use: show the message on the next page too."
    )
    preview = serializers.BooleanField(
        required=False,
        default=False,
        help_text="With `filter`: change nothing, answer how many faces would change and a sample of them.",
    )
    confirm_large = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Confirms a change of more than CURATOR_MAX_ACTION_SHARE of the dataset's faces "
        "(refused with code needs_confirmation otherwise).",
    )


def preview_body(dataset, preview: services.ActionPreview) -> dict:
    """A preview as JSON: count, total, share, whether `confirm_large` is needed and a sample."""
    from django.urls import reverse

    return {
        "preview": True,
        "count": preview.count,
        "total": preview.total,
        "share": round(preview.share, 4),
        "needs_confirmation": preview.needs_confirmation,
        "reason": preview.reason,
        "message": f"This would change {_plural(preview.count)}, {preview.percent} % of the dataset.",
        "sample": [
            {
                "id": f.pk,
                "crop_url": f"/media/{f.crop}",
                "url": reverse("labeling:face", kwargs={"dataset_id": dataset.pk, "face_id": f.pk}),
                "label": f.label,
            }
            for f in preview.sample
        ],
    }


FACE_STATE_FIELDS = ("id", "version", "label", "is_unsure", "is_excluded", "split")


def _faces_state(face_ids) -> list[dict]:
    """The faces' label state after a change, for the grid to redraw its tiles."""
    return list(Face.objects.filter(pk__in=face_ids).order_by("id").values(*FACE_STATE_FIELDS))


def _plural(n: int, word: str = "face") -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


class FacePagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    invalid_page_message = "Page {page_number} does not exist for this filter: {message}"


def paginated(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The schema of a page of FacePagination (the views paginate by hand, which drf-spectacular
    cannot see): count, next and previous links, and the page's items."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )


def _dataset_dict(dataset, user) -> dict:
    from labeling.keys import class_keys_for

    return {
        "id": dataset.pk,
        "name": dataset.name,
        "description": dataset.description,
        "classes": dataset.classes,
        "class_keys": class_keys_for(dataset),
        "min_faces_per_class": dataset.min_faces_per_class,
        "can_curate": can_curate(user, dataset),
    }


class DatasetList(APIView):
    @extend_schema(responses=LabelingDatasetSerializer(many=True), summary="Datasets you can see")
    def get(self, request):
        return Response([_dataset_dict(ds, request.user) for ds in visible_datasets(request.user)])


class DatasetDetail(APIView):
    @extend_schema(responses=LabelingDatasetSerializer, summary="One dataset with its class balance")
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        ov = selectors.dataset_overview(dataset=dataset)
        return Response(
            {
                **_dataset_dict(dataset, request.user),
                "faces": ov["faces"],
                "excluded": ov["excluded"],
                "unsure": ov["unsure"],
                "balance": {label: dict(zip(ov["splits"], counts, strict=True)) for label, counts, _ in ov["rows"]},
                "outcomes": ov["outcomes"],
            }
        )


class FaceList(APIView):
    @extend_schema(
        parameters=filters.face_filter_parameters(),
        responses=paginated("PaginatedGridFaceList", GridFaceSerializer(many=True)),
        operation_id="datasets_faces_list",
        summary="Faces, filtered as in the grid",
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        params = request.query_params.copy()
        params.pop("page_size", None)
        flt = filters.face_filter(dataset=dataset, params=params)
        if flt.errors:
            raise ValidationError(flt.field_errors)
        paginator = FacePagination()
        page = paginator.paginate_queryset(flt.queryset.select_related("image"), request, view=self)
        selectors.faces_attach_predictions(faces=page, model_version=flt.model_version)
        return paginator.get_paginated_response(GridFaceSerializer(page, many=True).data)


class FaceDetail(APIView):
    @extend_schema(responses=GridFaceSerializer, summary="One face with its label history")
    def get(self, request, dataset_id: int, face_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        face = Face.objects.filter(dataset=dataset, pk=face_id).select_related("image").first()
        if face is None:
            raise NotFound("No such face in this dataset.")
        data = GridFaceSerializer(face).data
        data["history"] = FaceLabelEventSerializer(
            face.label_events.select_related("user").order_by("-id")[:200], many=True
        ).data
        return Response(data)


_LABELING_CODES = {services.InvalidChange: "invalid_change", services.NoFaces: "no_faces"}


def labeling_api_error(exc: services.LabelingError) -> ApiError:
    """The API error for a refused change (raise it): 409 with the faces' `current` state for a
    stale face, 400 otherwise (with `confirmation`, the count and share, for a large action asked
    without `confirm_large`)."""
    if isinstance(exc, services.StaleFace):
        return ApiError(exc.message, status=status.HTTP_409_CONFLICT, code="stale_face", current=exc.current)
    if isinstance(exc, services.NeedsConfirmation):
        return ApiError(
            exc.message,
            code=exc.code,
            confirmation={"count": exc.face_count, "total": exc.total, "share": round(exc.share, 4)},
        )
    return ApiError(exc.message, code=_LABELING_CODES.get(type(exc), "refused"))


class LabelChange(APIView):
    @extend_schema(
        request=LabelChangeSerializer,
        responses={200: BulkActionSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        summary="Change label, unsure, excluded or split of faces (by ids or by a filter)",
        description="Give `faces` (ids) and optionally `versions` ({id: version you saw}); a face changed since "
        "is refused with 409 and its current state. Or give `filter` (a grid query string) to change every "
        "matching face, optionally with `expected_count`.",
    )
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        body = LabelChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        # The grid's script signs in with the session; other clients with a token.
        source = "grid" if request.auth is None else "api"
        try:
            if "filter" in data:
                flt = filters.face_filter(dataset=dataset, params=QueryDict(data["filter"]))
                if flt.errors:
                    raise services.InvalidChange("The filter is not valid: " + " ".join(flt.errors))
                faces = Face.objects.filter(pk__in=flt.matching.values("pk"))
                if "expected_count" in data and faces.count() != data["expected_count"]:
                    raise services.InvalidChange(
                        f"The filter now matches {faces.count()} faces, not the {data['expected_count']} you saw; "
                        "reload and try again."
                    )
                if data["preview"]:
                    preview = services.faces_update_preview(dataset=dataset, faces=faces, changes=data["changes"])
                    return Response(preview_body(dataset, preview))
                # "All N matching" can be most of the dataset: above the share it needs a second yes.
                services.action_share_check(
                    dataset=dataset,
                    face_count=services.faces_changing_count(dataset=dataset, faces=faces, changes=data["changes"]),
                    confirmed_large=data["confirm_large"],
                )
                params = {"source": source, "filter": flt.values}
            elif data["preview"]:
                raise services.InvalidChange("A preview needs `filter` (a grid query string).")
            elif "faces" in data:
                faces, params = data["faces"], {"source": source}
            else:
                raise services.InvalidChange("Give `faces` (a list of ids) or `filter` (a grid query string).")
            action = services.faces_update(
                user=request.user,
                dataset=dataset,
                faces=faces,
                changes=data["changes"],
                params=params,
                expected_versions={int(k): v for k, v in (data.get("versions") or {}).items()},
            )
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        except ValueError:
            raise ValidationError({"versions": ["Face ids in versions must be whole numbers."]}) from None
        message = f"{action.get_kind_display()}: {_plural(action.face_count)} changed."
        if data["flash"]:
            messages.success(request._request, message)
        body = {**BulkActionSerializer(action).data, "message": message}
        if isinstance(faces, list) and len(faces) <= 1000:
            body["faces"] = _faces_state(faces)
        return Response(body)


def _revert_response(result) -> Response:
    """What an undo or a revert did: the new action, the faces put back, the conflicts kept, a
    sentence saying so and the state of (up to 1000 of) the faces it touched."""
    reverted = result.action.reverts
    message = f"Undid {reverted.get_kind_display().lower()} of {_plural(result.reverted)}."
    if result.conflicts:
        kept = len({c["face_id"] for c in result.conflicts})
        message += f" {kept} face(s) changed since and were kept as they are."
    ids = list(reverted.events.values_list("face_id", flat=True).distinct()[:1000])
    return Response(
        {
            "action": BulkActionSerializer(result.action).data,
            "reverted": result.reverted,
            "conflicts": result.conflicts,
            "message": message,
            "faces": _faces_state(ids),
        }
    )


class Undo(APIView):
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT, summary="Undo your latest change on this dataset")
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        try:
            result = services.bulk_action_undo_last(user=request.user, dataset=dataset)
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return _revert_response(result)


class NotAFaceSerializer(serializers.Serializer):
    faces = serializers.ListField(child=serializers.IntegerField(), help_text="Ids of the false detections.")
    versions = serializers.DictField(child=serializers.IntegerField(), required=False)


class NotAFace(APIView):
    @extend_schema(
        request=NotAFaceSerializer,
        responses={200: BulkActionSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        summary="Mark faces as not a face (false detections): excluded with that reason, undoable",
    )
    def post(self, request, dataset_id: int):
        # Annotators may: it is an exclusion of a face they looked at, like `x`.
        dataset = get_dataset_for(request.user, dataset_id)
        body = NotAFaceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            action = services.faces_mark_not_face(
                user=request.user,
                dataset=dataset,
                faces=data["faces"],
                expected_versions={int(k): v for k, v in (data.get("versions") or {}).items()},
            )
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        except ValueError:
            raise ValidationError({"versions": ["Face ids in versions must be whole numbers."]}) from None
        message = f"Not a face: {_plural(action.face_count)} excluded as false detection{'s' if action.face_count != 1 else ''}."
        if not action.face_count:
            message = "Already marked as not a face: nothing changed."
        body = {**BulkActionSerializer(action).data, "message": message, "faces": _faces_state(data["faces"][:1000])}
        return Response(body)


class ActionList(APIView):
    @extend_schema(
        responses=paginated("PaginatedBulkActionList", BulkActionSerializer(many=True)),
        summary="History of actions, newest first",
        operation_id="datasets_actions_list",
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        paginator = FacePagination()
        page = paginator.paginate_queryset(selectors.bulk_actions(dataset=dataset), request, view=self)
        return paginator.get_paginated_response(BulkActionSerializer(page, many=True).data)


class ActionRevert(APIView):
    def _action(self, request, dataset_id: int, action_id: int) -> BulkAction:
        dataset = get_dataset_for(request.user, dataset_id)
        action = BulkAction.objects.filter(dataset=dataset, pk=action_id).first()
        if action is None:
            raise NotFound("No such action in this dataset.")
        if not (can_curate(request.user, dataset) or action.user_id == request.user.pk):
            raise PermissionDenied("Annotators may only revert their own changes.")
        return action

    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="What a revert would do (nothing is changed)",
        description="`restorable` faces, `changes` per face in words (now → after the revert) and `conflicts`: "
        "faces changed again since, which the revert skips. 200 faces of each per page, by face id: "
        "`after` / `conflicts_after` (a face id, from `next_after` / `conflicts_next_after`) give the next page.",
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="face id: changes after it (next page)"),
            OpenApiParameter("conflicts_after", OpenApiTypes.INT, description="face id: conflicts after it"),
        ],
    )
    def get(self, request, dataset_id: int, action_id: int):
        action = self._action(request, dataset_id, action_id)
        preview = services.bulk_action_revert_preview(
            action=action,
            after=id_param(request.query_params.get("after", "")),
            conflicts_after=id_param(request.query_params.get("conflicts_after", "")),
        )
        return Response(
            {
                "action": BulkActionSerializer(action).data,
                "already_reverted": action.reverted_by.exists(),
                "restorable": preview["restorable"],
                "changes": [{"face": row["face"].pk, "changes": row["changes"]} for row in preview["changes"]],
                "conflicts": [{"face": row["face"].pk, "changes": row["changes"]} for row in preview["conflicts"]],
                "conflict_faces": preview["conflict_faces"],
                "next_after": preview["next_after"],
                "conflicts_next_after": preview["conflicts_next_after"],
            }
        )

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT, summary="Revert an action; later changes are kept")
    def post(self, request, dataset_id: int, action_id: int):
        action = self._action(request, dataset_id, action_id)
        try:
            result = services.bulk_action_revert(user=request.user, action=action)
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return _revert_response(result)


class Splits(APIView):
    @extend_schema(
        request=inline_serializer(
            "SplitRequest",
            {
                "seed": serializers.IntegerField(default=0),
                "ratios": serializers.ListField(child=serializers.FloatField(), required=False),
            },
        ),
        responses=BulkActionSerializer,
        summary="Assign stratified, seeded splits (curators)",
    )
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id, curate=True)
        try:
            if request.data.get("preview"):
                preview = services.splits_assign_preview(
                    dataset=dataset,
                    seed=request.data.get("seed", 0),
                    ratios=request.data.get("ratios", (0.7, 0.15, 0.15)),
                )
                return Response(preview_body(dataset, preview))
            action = services.splits_assign(
                user=request.user,
                dataset=dataset,
                seed=request.data.get("seed", 0),
                ratios=request.data.get("ratios", (0.7, 0.15, 0.15)),
            )
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return Response(BulkActionSerializer(action).data)


class Rules(APIView):
    @extend_schema(
        request=inline_serializer(
            "RuleRequest",
            {
                **{k: serializers.FloatField(required=False) for k in services.RULE_FIELDS},
                "preview": serializers.BooleanField(
                    required=False, help_text="Change nothing: answer the count and a sample of the faces."
                ),
                "confirm_large": serializers.BooleanField(
                    required=False, help_text="Needed when the rule excludes more than CURATOR_MAX_ACTION_SHARE."
                ),
            },
        ),
        responses={200: BulkActionSerializer, 400: OpenApiTypes.OBJECT},
        summary="Exclude faces below quality thresholds (curators)",
        description="`preview: true` answers count, total, share, needs_confirmation and a sample (ids and "
        "URLs) without changing anything. A rule over more than CURATOR_MAX_ACTION_SHARE of the dataset is "
        "refused with code `needs_confirmation` unless `confirm_large: true`.",
    )
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id, curate=True)
        data = dict(request.data)
        try:
            preview = services._as_bool("preview", data.pop("preview", False))
            confirmed = services._as_bool("confirm_large", data.pop("confirm_large", False))
            if preview:
                return Response(
                    preview_body(dataset, services.exclusion_rule_preview(dataset=dataset, thresholds=data))
                )
            action = services.exclusion_rule_apply(
                user=request.user, dataset=dataset, thresholds=data, confirmed_large=confirmed
            )
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        return Response(BulkActionSerializer(action).data)


class Exports(APIView):
    @extend_schema(
        responses=inline_serializer(
            "ExportFile",
            {"name": serializers.CharField(), "size": serializers.IntegerField(), "url": serializers.CharField()},
            many=True,
        ),
        summary="Exports of this dataset (curators)",
        operation_id="datasets_exports_list",
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id, curate=True)
        return Response(
            [
                {"name": e["name"], "size": e["size"], "url": f"/api/v1/datasets/{dataset.pk}/exports/{e['name']}"}
                for e in selectors.exports_list(dataset=dataset)
            ]
        )

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT, summary="Build an export zip (curators)")
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id, curate=True)
        try:
            path = services.export_create(user=request.user, dataset=dataset)
        except services.LabelingError as exc:
            raise labeling_api_error(exc) from exc
        name = path.rsplit("/", 1)[-1]
        return Response(
            {"name": name, "url": f"/api/v1/datasets/{dataset.pk}/exports/{name}"}, status=status.HTTP_201_CREATED
        )


class ExportDownload(APIView):
    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        summary="Download an export zip",
        operation_id="datasets_export_download",
    )
    def get(self, request, dataset_id: int, name: str):
        from labeling.views import export_file_response

        dataset = get_dataset_for(request.user, dataset_id, curate=True)
        return export_file_response(dataset, name)


urlpatterns = [
    path("datasets/", DatasetList.as_view(), name="labeling-api-datasets"),
    path("datasets/<int:dataset_id>/", DatasetDetail.as_view(), name="labeling-api-dataset"),
    path("datasets/<int:dataset_id>/faces/", FaceList.as_view(), name="labeling-api-faces"),
    path("datasets/<int:dataset_id>/faces/<int:face_id>/", FaceDetail.as_view(), name="labeling-api-face"),
    path("datasets/<int:dataset_id>/label-changes/", LabelChange.as_view(), name="labeling-api-change"),
    path("datasets/<int:dataset_id>/undo/", Undo.as_view(), name="labeling-api-undo"),
    path("datasets/<int:dataset_id>/not-a-face/", NotAFace.as_view(), name="labeling-api-not-a-face"),
    path("datasets/<int:dataset_id>/actions/", ActionList.as_view(), name="labeling-api-actions"),
    path(
        "datasets/<int:dataset_id>/actions/<int:action_id>/revert/", ActionRevert.as_view(), name="labeling-api-revert"
    ),
    path("datasets/<int:dataset_id>/splits/", Splits.as_view(), name="labeling-api-splits"),
    path("datasets/<int:dataset_id>/rules/", Rules.as_view(), name="labeling-api-rules"),
    path("datasets/<int:dataset_id>/exports/", Exports.as_view(), name="labeling-api-exports"),
    path("datasets/<int:dataset_id>/exports/<str:name>", ExportDownload.as_view(), name="labeling-api-export"),
]
