"""The map's API, under /api/v1/ (the map page's script reads it; labeling owns it because the
map is coloured by labels, predictions and metadata, which embeddings may not import):

- GET  datasets/<id>/map/            the map's state (computing / ready / failed, progress) and,
                                     with ?points=1, every face on it: id, x, y, crop, label, split
- GET  datasets/<id>/map/points/     every point of the map in binary (what the page draws: a
                                     million faces are 22 MB, not 100 MB of JSON; map_points_binary)
- GET  datasets/<id>/map/faces/<id>/ one face of the map: its crop and label (the hover tip)
- POST datasets/<id>/map/compute/    compute the map of the current descriptors (unless current)
- GET  datasets/<id>/map/colours/    ?by=prediction|disagreement|m_<key> [&model=<version id>]:
                                     a category per face, in the map's order
- POST datasets/<id>/selections/     {"face_ids": [...]} -> a saved selection and its grid URL
- GET  datasets/<id>/faces/<id>/similar/  the nearest faces with their distances
- POST datasets/<id>/similar-photo/  (multipart "image") the nearest faces to each face of a photo
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import numpy as np
from django.db.models.fields.json import KeyTransform
from django.http import HttpResponse
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from curator.api_errors import ApiError
from curator.models import Face
from curator.params import id_param
from curator.permissions import get_dataset_for
from embeddings import maps, similar
from embeddings.models import FaceSelection
from labeling.extensions import prediction_provider
from labeling.map_wire import map_points_pack
from labeling.similarity import similar_neighbours

MAX_SELECTION = 100_000
SPLITS = ["train", "val", "test", ""]
# A numeric metadata column with more values than this is coloured by bands (age by decades).
MAX_CATEGORIES = 12


def _media_base() -> str:
    return reverse("media", kwargs={"path": "x"})[:-1]


def _map_faces(dataset) -> dict | None:
    """Every face on the stored map with what the page colours and shows on hover."""
    points = maps.map_points(dataset=dataset)
    if points is None:
        return None
    ids, xy = points
    rows = Face.objects.filter(dataset=dataset, pk__in=ids.tolist()).values_list(
        "pk", "label", "split", "crop", "is_excluded"
    )
    by_id = {r[0]: r for r in rows}
    classes = list(dataset.classes)
    label_categories = [*classes, "unlabelled"]
    media = _media_base()
    out = {"id": [], "x": [], "y": [], "crop": [], "label": [], "split": [], "excluded": []}
    for face_id, (x, y) in zip(ids.tolist(), xy.tolist(), strict=True):
        row = by_id.get(face_id)
        if row is None:  # deleted since the map was computed
            continue
        _, label, split, crop, excluded = row
        out["id"].append(face_id)
        out["x"].append(round(x, 5))
        out["y"].append(round(y, 5))
        out["crop"].append(media + quote(crop, safe="/") if crop else "")
        out["label"].append(classes.index(label) if label in classes else len(classes))
        out["split"].append(SPLITS.index(split) if split in SPLITS else 3)
        out["excluded"].append(int(excluded))
    return {"faces": out, "categories": {"label": label_categories, "split": ["train", "val", "test", "none"]}}


class MapDetail(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("points", OpenApiTypes.BOOL, description="1: include every face on the map")],
        responses=OpenApiTypes.OBJECT,
        summary="The dataset's embedding map: state, progress and (with points=1) its faces",
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        body = {"state": maps.map_state(dataset=dataset)}
        if request.query_params.get("points") in ("1", "true"):
            body.update(_map_faces(dataset) or {"faces": None})
        return Response(body)


# Marks a point of the stored map whose face was deleted since (kept so colours stay aligned).
GONE = 255


def map_points_binary(dataset) -> bytes | None:
    """The stored map as the page reads it: a little-endian uint32 length, that many bytes of JSON
    ({"n", "categories"}, padded with spaces to a multiple of 8), then int64 ids [n], float32 x [n],
    float32 y [n], uint8 label [n], uint8 split [n], uint8 excluded [n] (GONE: deleted since).
    Every point of the map, in its order: the colours endpoint's codes line up with it."""
    points = maps.map_points(dataset=dataset)
    if points is None:
        return None
    ids, xy = points
    n = len(ids)
    classes = list(dataset.classes)
    label = np.full(n, len(classes), dtype=np.uint8)
    split = np.full(n, 3, dtype=np.uint8)
    excluded = np.full(n, GONE, dtype=np.uint8)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    label_code = {c: i for i, c in enumerate(classes)}
    split_code = {s: i for i, s in enumerate(SPLITS)}
    rows = list(Face.objects.filter(dataset=dataset).values_list("pk", "label", "split", "is_excluded").order_by())
    if rows and n:
        pks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        at = np.minimum(np.searchsorted(sorted_ids, pks), n - 1)
        on_map = sorted_ids[at] == pks
        where = order[at[on_map]]
        kept = [r for r, keep in zip(rows, on_map.tolist(), strict=True) if keep]
        other = len(classes)
        label[where] = np.fromiter((label_code.get(r[1], other) for r in kept), dtype=np.uint8, count=len(kept))
        split[where] = np.fromiter((split_code.get(r[2], 3) for r in kept), dtype=np.uint8, count=len(kept))
        excluded[where] = np.fromiter((int(r[3]) for r in kept), dtype=np.uint8, count=len(kept))
    return map_points_pack(ids=ids, xy=xy, classes=classes, label=label, split=split, excluded=excluded)


class MapPoints(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY}, summary="The map's points, binary"
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        data = map_points_binary(dataset)
        if data is None:
            raise ApiError("This dataset has no map yet.", status=404, code="no_map")
        return HttpResponse(data, content_type="application/octet-stream")


class MapFace(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="One face of the map: crop and label (the hover tip)")
    def get(self, request, dataset_id: int, face_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        face = Face.objects.filter(dataset=dataset, pk=face_id).values_list("crop", "label").first()
        if face is None:
            raise NotFound("No such face in this dataset.")
        crop, label = face
        return Response(
            {"id": face_id, "crop": _media_base() + quote(crop, safe="/") if crop else "", "label": label or ""}
        )


class MapCompute(APIView):
    @extend_schema(request=None, responses=OpenApiTypes.OBJECT, summary="Compute the map of the current descriptors")
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        maps.derived_request(dataset_id=dataset.pk)
        return Response({"state": maps.map_state(dataset=dataset)}, status=status.HTTP_202_ACCEPTED)


def _bands(values: list) -> tuple[list[str], list]:
    """Numbers into at most MAX_CATEGORIES equal-width bands of a round width (ages: decades)."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    low, high = min(numbers), max(numbers)
    width = 1
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 1000, 10_000):
        width = step
        if (high - low) / step < MAX_CATEGORIES - 1:
            break
    start = (low // width) * width
    names, keys = [], []
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool):
            band = start + ((v - start) // width) * width
            keys.append(f"{band:g}–{band + width - 1:g}" if width > 1 else f"{band:g}")
        else:
            keys.append("none")
    names = sorted({k for k in keys if k != "none"}, key=lambda k: float(k.split("–")[0])) + ["none"]
    return names, keys


MAX_METADATA_KEY = 200


def metadata_key_valid(key: str) -> str:
    """A metadata key to colour by, or a 400 that says why not: keys come from labels.csv headers,
    so any printable text up to MAX_METADATA_KEY characters; control characters (NUL, which
    PostgreSQL cannot even receive in a query parameter) are refused."""
    if len(key) > MAX_METADATA_KEY or any(unicodedata.category(c) == "Cc" for c in key):
        raise ValidationError(
            {"by": [f"A metadata key is at most {MAX_METADATA_KEY} characters, without control characters."]}
        )
    return key


class MapColours(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("by", OpenApiTypes.STR, description="prediction, disagreement or m_<metadata key>"),
            OpenApiParameter("model", OpenApiTypes.INT, description="model version id (default: the active one)"),
        ],
        responses=OpenApiTypes.OBJECT,
        summary="A category per face of the map, in the map's order",
    )
    def get(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        by = request.query_params.get("by", "")
        points = maps.map_points(dataset=dataset)
        if points is None:
            raise ApiError("This dataset has no map yet.", status=404, code="no_map")
        ids = [int(i) for i in points[0]]
        if by in ("prediction", "disagreement"):
            provider = prediction_provider()
            raw = request.query_params.get("model", "")
            if raw:
                version_id = id_param(raw)
                if version_id is None or (version := provider.version(dataset=dataset, version_id=version_id)) is None:
                    raise ValidationError({"model": [f"“{raw}” is not a model version of this dataset."]})
            else:
                version = provider.active_version(dataset=dataset)
                if version is None:
                    raise ApiError(
                        "This dataset has no active model: choose a model version to colour by.", code="no_active_model"
                    )
            predicted = provider.predictions(model_version=version, face_ids=ids)
            if by == "prediction":
                categories = [*version.classes, "no prediction"]
                codes = [
                    categories.index(predicted[i][0])
                    if i in predicted and predicted[i][0] in categories
                    else len(categories) - 1
                    for i in ids
                ]
            else:
                labels = dict(Face.objects.filter(dataset=dataset, pk__in=ids).values_list("pk", "label"))
                categories = ["agrees", "disagrees", "unlabelled", "no prediction"]
                codes = []
                for i in ids:
                    if i not in predicted:
                        codes.append(3)
                    elif not labels.get(i):
                        codes.append(2)
                    else:
                        codes.append(0 if predicted[i][0] == labels[i] else 1)
            return Response({"by": by, "model": version.pk, "categories": categories, "codes": codes})
        if by.startswith("m_") and len(by) > 2:
            key = metadata_key_valid(by[2:])
            # KeyTransform sends the key as a query parameter: any name labels.csv gave a column
            # works (quotes, spaces, `__`), and none becomes part of the SQL or a lookup path.
            rows = dict(
                Face.objects.filter(dataset=dataset, pk__in=ids)
                .annotate(value=KeyTransform(key, "image__metadata"))
                .values_list("pk", "value")
            )
            values = [rows.get(i) for i in ids]
            distinct = {v for v in values if v is not None}
            if not distinct:
                raise ValidationError({"by": [f"No face of this dataset has the metadata “{key}”."]})
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
            if numeric and len(distinct) > MAX_CATEGORIES:
                categories, keys = _bands(values)
            else:
                names = sorted({str(v) for v in distinct}, key=lambda s: (len(s), s))
                keys = ["none" if v is None else str(v) for v in values]
                if len(names) > MAX_CATEGORIES:
                    # The most common values keep their colour; the rest share "other".
                    counts = {n: keys.count(n) for n in names}
                    names = sorted(names, key=lambda n: -counts[n])[: MAX_CATEGORIES - 1]
                    keys = [k if k in names or k == "none" else "other" for k in keys]
                    names.append("other")
                categories = [*names, "none"]
            index = {c: n for n, c in enumerate(categories)}
            return Response({"by": by, "categories": categories, "codes": [index[k] for k in keys]})
        raise ValidationError({"by": [f"Cannot colour by “{by}”: use prediction, disagreement or m_<metadata key>."]})


class SelectionSerializer(serializers.Serializer):
    face_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=MAX_SELECTION
    )


class SelectionCreate(APIView):
    @extend_schema(
        request=SelectionSerializer,
        responses=inline_serializer(
            "SavedSelection",
            {
                "id": serializers.IntegerField(),
                "count": serializers.IntegerField(),
                "grid_url": serializers.CharField(),
            },
        ),
        summary="Save a set of faces (e.g. a lasso on the map) to open in the grid",
    )
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        data = SelectionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = set(data.validated_data["face_ids"])
        found = set(Face.objects.filter(dataset=dataset, pk__in=wanted).values_list("pk", flat=True))
        if wanted - found:
            missing = sorted(wanted - found)
            raise ValidationError(
                {"face_ids": [f"{len(missing)} of these are not faces of this dataset (e.g. {missing[0]})."]}
            )
        selection = FaceSelection.objects.create(dataset=dataset, created_by=request.user, face_ids=sorted(found))
        url = reverse("labeling:grid", args=[dataset.pk]) + f"?selection={selection.pk}"
        return Response({"id": selection.pk, "count": len(found), "grid_url": url}, status=status.HTTP_201_CREATED)


class FaceSimilar(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("k", OpenApiTypes.INT, description="how many (1-500, default 20)")],
        responses=OpenApiTypes.OBJECT,
        summary="The faces nearest to a face by descriptor, with their distances",
    )
    def get(self, request, dataset_id: int, face_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        raw = request.query_params.get("k", "20")
        k = id_param(raw)
        if k is None or not 1 <= k <= 500:
            raise ValidationError({"k": [f"“{raw}” is not a number of faces from 1 to 500."]})
        if not Face.objects.filter(dataset=dataset, pk=face_id).exists():
            raise NotFound("No such face in this dataset.")
        neighbours = similar_neighbours(dataset=dataset, face_id=face_id, k=k)
        if neighbours is None:
            raise ApiError(
                f"Face {face_id} has no descriptor yet: descriptors are computed in the background after alignment.",
                status=409,
                code="no_descriptor",
            )
        return Response({"face": face_id, "similar": faces_with_distances(dataset=dataset, neighbours=neighbours)})


class PhotoSimilar(APIView):
    """Who in the dataset looks like the faces of an uploaded photo (the predict page's "who in the
    dataset looks like this")."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT},
        responses=OpenApiTypes.OBJECT,
        summary="The dataset's faces nearest to each face of an uploaded photo",
    )
    def post(self, request, dataset_id: int):
        dataset = get_dataset_for(request.user, dataset_id)
        upload = request.FILES.get("image") or request.FILES.get("file")
        if upload is None:
            raise ValidationError({"image": ["Send the photo as the multipart field “image”."]})
        try:
            faces = similar.photo_neighbours(dataset=dataset, data=upload.read(), k=12)
        except similar.PhotoRejected as exc:
            raise ApiError(exc.message, status=exc.status, code=exc.code) from exc
        return Response(
            {
                "dataset": dataset.pk,
                "faces": [
                    {
                        "index": f.index,
                        "box": dict(zip(("left", "top", "right", "bottom"), f.box, strict=True)),
                        "similar": faces_with_distances(dataset=dataset, neighbours=f.neighbours),
                    }
                    for f in faces
                ],
            }
        )


def faces_with_distances(*, dataset, neighbours: list[tuple[int, float]]) -> list[dict]:
    """[(face id, distance)] -> what a page shows of each: id, distance, label, crop URL, file."""
    rows = {
        f.pk: f for f in Face.objects.filter(dataset=dataset, pk__in=[i for i, _ in neighbours]).select_related("image")
    }
    media = _media_base()
    return [
        {
            "id": i,
            "distance": round(d, 4),
            "label": rows[i].label,
            "crop_url": media + quote(rows[i].crop, safe="/"),
            "file": rows[i].image.original_name,
        }
        for i, d in neighbours
        if i in rows
    ]


urlpatterns = [
    path("datasets/<int:dataset_id>/map/", MapDetail.as_view(), name="labeling-api-map"),
    path("datasets/<int:dataset_id>/map/compute/", MapCompute.as_view(), name="labeling-api-map-compute"),
    path("datasets/<int:dataset_id>/map/points/", MapPoints.as_view(), name="labeling-api-map-points"),
    path("datasets/<int:dataset_id>/map/faces/<int:face_id>/", MapFace.as_view(), name="labeling-api-map-face"),
    path("datasets/<int:dataset_id>/map/colours/", MapColours.as_view(), name="labeling-api-map-colours"),
    path("datasets/<int:dataset_id>/selections/", SelectionCreate.as_view(), name="labeling-api-selections"),
    path(
        "datasets/<int:dataset_id>/faces/<int:face_id>/similar/",
        FaceSimilar.as_view(),
        name="labeling-api-face-similar",
    ),
    path("datasets/<int:dataset_id>/similar-photo/", PhotoSimilar.as_view(), name="labeling-api-photo-similar"),
]
