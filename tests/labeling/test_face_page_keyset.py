"""The face page's previous/next walk the grid's filter and order by keyset (issue 20): the face
just before and after are found by comparing sort keys, not by reading every matching id; the
answer is the grid's order exactly, for every sort, ties and NULLs included."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from curator.models import Face
from labeling import filters, selectors
from tests.embeddings.factories import descriptors_store
from tests.labeling.factories import make_faces, version_with_predictions


@pytest.fixture
def faces(dataset):
    faces = make_faces(dataset, 24, labels=["female", "male", "male", ""])
    # Ties and NULLs: equal sizes, some sharpness missing.
    Face.objects.filter(pk__in=[f.pk for f in faces[::3]]).update(size_px=80)
    Face.objects.filter(pk__in=[f.pk for f in faces[::5]]).update(sharpness=None)
    descriptors_store(faces)
    return faces


SORTS = [
    "id",
    "-id",
    "size",
    "-size",
    "sharpness",
    "-sharpness",
    "label",
    "-label",
    "yaw",
    "-score",
    "confidence",
    "-confidence",
]


@pytest.mark.parametrize("sort", SORTS)
def test_keyset_neighbours_are_the_grid_order(dataset, faces, sort):
    version = version_with_predictions(dataset, faces[:18])  # some faces without a prediction: NULL confidence
    params = {"sort": sort, "model": str(version.pk)}
    if sort.lstrip("-") not in ("confidence",):
        params["label"] = "labelled"
    flt = filters.face_filter(dataset=dataset, params=params)
    assert not flt.errors, flt.errors
    order = list(flt.queryset.values_list("pk", flat=True))
    for i, face_id in enumerate(order):
        face = Face.objects.get(pk=face_id)
        got = selectors.face_neighbours(dataset=dataset, face=face, flt=flt)
        assert got["previous"] == (order[i - 1] if i else None), (sort, i)
        assert got["next"] == (order[i + 1] if i + 1 < len(order) else None), (sort, i)
        assert got["position"] == i + 1 and got["count"] == len(order)


def test_no_query_reads_every_matching_id(dataset, faces):
    flt = filters.face_filter(dataset=dataset, params={"sort": "-size"})
    with CaptureQueriesContext(connection) as queries:
        selectors.face_neighbours(dataset=dataset, face=faces[5], flt=flt)
    # Each query answers one row or a count: LIMIT 1 or COUNT, never the whole list.
    for q in queries.captured_queries:
        sql = q["sql"].upper()
        assert "LIMIT" in sql or "COUNT(" in sql, sql
