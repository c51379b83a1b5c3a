"""The labeling REST API: faces filtered as in the grid, label changes with versions, undo,
revert, exports, bad input, and the OpenAPI schema."""

import io
import zipfile

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from curator.models import Face
from labeling.models import BulkAction
from tests.labeling.factories import make_faces


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 25, labels=["female", "male", ""])


@pytest.fixture
def bob_api(bob) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    return client


@pytest.fixture
def alice_api(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


def test_faces_are_filtered_sorted_and_paginated_like_the_grid(bob_api, dataset, faces):
    response = bob_api.get(
        f"/api/v1/datasets/{dataset.pk}/faces/", {"label": "female", "sort": "-size", "page_size": 3}
    )
    assert response.status_code == 200
    data = response.json()
    females = sorted((f for f in faces if f.label == "female"), key=lambda f: (-f.size_px, -f.pk))
    assert data["count"] == len(females)
    assert [r["id"] for r in data["results"]] == [f.pk for f in females[:3]]
    first = data["results"][0]
    assert first["crop_url"] == f"/media/{females[0].crop}" and first["metadata"]["age"] >= 0
    assert data["next"] and "page=2" in data["next"]


def test_bad_filters_and_pages_get_clear_errors(bob_api, dataset, faces):
    bad = bob_api.get(f"/api/v1/datasets/{dataset.pk}/faces/", {"label": "cat", "min_size": "x"})
    assert bad.status_code == 400
    assert any("Unknown label “cat”" in e for e in bad.json()["error"]["fields"]["label"])
    past = bob_api.get(f"/api/v1/datasets/{dataset.pk}/faces/", {"page": 9})
    assert past.status_code == 404 and "Page 9 does not exist" in past.json()["error"]["message"]


def test_label_change_by_ids_with_versions_and_conflict(bob_api, alice_api, dataset, faces):
    f = faces[2]
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    ok = bob_api.post(url, {"faces": [f.pk], "versions": {str(f.pk): 1}, "changes": {"label": "female"}}, format="json")
    assert ok.status_code == 200 and ok.json()["face_count"] == 1 and ok.json()["kind"] == "label"
    stale = alice_api.post(
        url, {"faces": [f.pk], "versions": {str(f.pk): 1}, "changes": {"label": "male"}}, format="json"
    )
    assert stale.status_code == 409
    assert stale.json()["current"][0]["label"] == "female" and stale.json()["current"][0]["version"] == 2
    assert Face.objects.get(pk=f.pk).label == "female"
    detail = bob_api.get(f"/api/v1/datasets/{dataset.pk}/faces/{f.pk}/").json()
    assert detail["version"] == 2 and detail["history"][0]["new_value"] == "female"
    assert detail["history"][0]["user"] == "bob"


def test_label_change_by_filter_then_undo(bob_api, dataset, faces):
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    unlabelled = [f.pk for f in faces if not f.label]
    response = bob_api.post(
        url, {"filter": "label=unlabelled", "changes": {"is_excluded": True}, "confirm_large": True}, format="json"
    )
    assert response.json()["face_count"] == len(unlabelled)
    assert set(Face.objects.filter(is_excluded=True).values_list("id", flat=True)) == set(unlabelled)
    undo = bob_api.post(f"/api/v1/datasets/{dataset.pk}/undo/")
    assert undo.status_code == 200 and undo.json()["reverted"] == len(unlabelled)
    assert not Face.objects.filter(is_excluded=True).exists()


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"faces": [1], "changes": {"split": "holdout"}}, 400, "Unknown split"),
        ({"faces": [], "changes": {"label": "male"}}, 400, "No faces selected"),
        ({"changes": {"label": "male"}}, 400, "Give `faces`"),
        ({"filter": "sort=nope", "changes": {"label": "male"}}, 400, "The filter is not valid"),
        ({"filter": "label=male", "expected_count": 1000, "changes": {"label": "male"}}, 400, "now matches"),
        ({"faces": "x", "changes": {"label": "male"}}, 400, ""),
        ({"faces": [1]}, 400, ""),
    ],
)
def test_bad_label_changes_change_nothing(bob_api, dataset, faces, body, status, text):
    response = bob_api.post(f"/api/v1/datasets/{dataset.pk}/label-changes/", body, format="json")
    assert response.status_code == status
    assert text in str(response.json())
    assert not BulkAction.objects.exists()


def test_revert_through_the_api_reports_conflicts(alice_api, bob_api, dataset, faces):
    ids = [f.pk for f in faces[:4]]
    action = alice_api.post(
        f"/api/v1/datasets/{dataset.pk}/label-changes/", {"faces": ids, "changes": {"split": "val"}}, format="json"
    ).json()
    bob_api.post(
        f"/api/v1/datasets/{dataset.pk}/label-changes/",
        {"faces": [ids[0]], "changes": {"split": "test"}},
        format="json",
    )
    result = alice_api.post(f"/api/v1/datasets/{dataset.pk}/actions/{action['id']}/revert/").json()
    assert result["reverted"] == 3 and [c["face_id"] for c in result["conflicts"]] == [ids[0]]
    assert Face.objects.get(pk=ids[0]).split == "test"
    again = alice_api.post(f"/api/v1/datasets/{dataset.pk}/actions/{action['id']}/revert/")
    assert again.status_code == 400 and "already reverted" in again.json()["error"]["message"]
    history = alice_api.get(f"/api/v1/datasets/{dataset.pk}/actions/").json()
    assert [a["kind"] for a in history["results"]] == ["revert", "split", "split"]


def test_export_through_the_api(alice_api, dataset, faces):
    alice_api.post(f"/api/v1/datasets/{dataset.pk}/splits/", {"seed": 3}, format="json")
    created = alice_api.post(f"/api/v1/datasets/{dataset.pk}/exports/")
    assert created.status_code == 201
    download = alice_api.get(created.json()["url"])
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert "manifest.csv" in archive.namelist()
    assert any(n.startswith(("train/female/", "train/male/")) for n in archive.namelist())
    listed = alice_api.get(f"/api/v1/datasets/{dataset.pk}/exports/").json()
    assert listed[0]["name"] == created.json()["name"]


def test_bad_split_request_through_the_api(alice_api, dataset, faces):
    response = alice_api.post(f"/api/v1/datasets/{dataset.pk}/splits/", {"ratios": [1, -1, 0]}, format="json")
    assert response.status_code == 400 and "non-negative" in response.json()["error"]["message"]


def test_schema_documents_the_labeling_endpoints(alice_api, dataset):
    response = alice_api.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for p in (
        "/api/v1/datasets/{dataset_id}/faces/",
        "/api/v1/datasets/{dataset_id}/label-changes/",
        "/api/v1/datasets/{dataset_id}/actions/{action_id}/revert/",
        "/api/v1/datasets/{dataset_id}/exports/",
    ):
        assert p in paths
    params = {p["name"] for p in paths["/api/v1/datasets/{dataset_id}/faces/"]["get"]["parameters"]}
    assert {"label", "split", "min_size", "sort", "disagrees"} <= params
    # The schema's parameters are the FilterSet's, so they cannot drift from what the grid accepts.
    assert {"min_abs_yaw", "max_score", "model", "predicted", "min_conf", "max_conf", "m_<key>"} <= params
    from labeling.filters import FaceFilterSet

    assert set(FaceFilterSet.base_filters) <= params


def test_every_api_error_has_one_shape(bob_api, dataset, faces):
    url = f"/api/v1/datasets/{dataset.pk}/faces/"
    bad = bob_api.get(url, {"label": "cat", "min_size": "x", "max_score": "y"}).json()["error"]
    assert bad["code"] == "invalid" and "Unknown label “cat”" in bad["message"]
    assert set(bad["fields"]) == {"label", "min_size", "max_score"}
    assert bad["fields"]["min_size"] == ["“x” is not a number (min_size)."]
    missing = bob_api.get(f"/api/v1/datasets/{dataset.pk}/faces/999999/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    anonymous = APIClient().get(url)
    assert anonymous.status_code in (401, 403) and anonymous.json()["error"]["code"] == "not_authenticated"
    refused = bob_api.post(f"/api/v1/datasets/{dataset.pk}/splits/", {"seed": 1}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    stale = bob_api.post(
        f"/api/v1/datasets/{dataset.pk}/label-changes/",
        {"faces": [faces[0].pk], "versions": {str(faces[0].pk): faces[0].version + 5}, "changes": {"label": "male"}},
        format="json",
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_face"
    assert stale.json()["current"][0]["id"] == faces[0].pk
