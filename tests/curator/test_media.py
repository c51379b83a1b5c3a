"""Stored files are served only to people who may see their dataset, and only as images."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def store(dataset, name: str, data: bytes = b"\xff\xd8\xff\xe0 jpeg bytes") -> str:
    return default_storage.save(f"datasets/{dataset.pk}/faces/{name}", ContentFile(data))


def test_members_get_images_with_safe_headers(alice_client, dataset):
    path = store(dataset, "1/0-abc.jpg")
    response = alice_client.get(f"/media/{path}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_an_html_file_in_storage_is_never_served(alice_client, dataset):
    path = store(dataset, "evil.html", b"<script>alert(1)</script>")
    assert alice_client.get(f"/media/{path}").status_code == 404


def test_html_named_jpg_is_still_sent_as_an_image(alice_client, dataset):
    path = store(dataset, "evil.jpg", b"<html><script>alert(1)</script></html>")
    response = alice_client.get(f"/media/{path}")
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_outsiders_and_anonymous_users_get_nothing(charlie_client, dataset, client):
    path = store(dataset, "1/0-abc.jpg")
    assert charlie_client.get(f"/media/{path}").status_code == 404
    charlie_client.logout()
    assert client.get(f"/media/{path}").status_code == 302


def test_paths_outside_datasets_are_refused(alice_client, dataset):
    for path in ["../settings.py", f"datasets/{dataset.pk}/../../secret.jpg", "other/1/x.jpg", "datasets/x/a.jpg"]:
        assert alice_client.get(f"/media/{path}").status_code == 404
