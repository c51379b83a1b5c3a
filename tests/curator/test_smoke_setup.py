"""The project starts, its settings load, and every page needs a login."""

import pytest

from curator.models import Dataset


@pytest.mark.django_db
def test_anonymous_user_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


@pytest.mark.django_db
def test_login_page_is_public(client):
    assert client.get("/accounts/login/").status_code == 200


def test_dataset_list_shows_only_visible_datasets(alice_client, dataset, charlie):
    Dataset.objects.create(name="hidden-from-alice", created_by=charlie)
    body = alice_client.get("/").content.decode()
    assert ">faces<" in body
    assert "hidden-from-alice" not in body


def test_api_docs_load_no_script_from_a_cdn(alice_client):
    body = alice_client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in body
    assert "cdn." not in body and "jsdelivr" not in body and "unpkg" not in body


def test_openapi_schema_needs_a_login(alice_client):
    from django.test import Client

    assert Client().get("/api/v1/schema/").status_code in (401, 403)
    assert alice_client.get("/api/v1/schema/").status_code == 200
