"""`/api/v1/` answers with links to the endpoints, not Django's 404 page."""

from rest_framework.test import APIClient


def test_the_api_root_links_to_the_endpoints(alice):
    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/v1/")
    assert response.status_code == 200
    links = response.json()
    assert links["datasets"].endswith("/api/v1/datasets/")
    assert links["predict"].endswith("/api/v1/predict") and links["schema"].endswith("/api/v1/schema/")
    assert links["training_jobs"].endswith("/api/v1/training/jobs/")


def test_an_unknown_api_path_is_still_404(db):
    assert APIClient().get("/api/v1/nothing-here/").status_code == 404


def test_the_api_root_needs_a_login_like_every_api_call(db):
    response = APIClient().get("/api/v1/")
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"
