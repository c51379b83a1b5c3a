"""The predict page and its one-click "add this photo to the dataset": the model's label becomes a
suggestion (never a label), only curators may add, and a photo is never added twice."""

import io

import pytest
from django.core.files.storage import default_storage

from curator.models import Face, SourceImage
from labeling.models import LabelEvent
from tests.training.predict_support import blank_photo, embedding_version, labelled_faces, lfw_photo
from training.models import Prediction

PAGE = "/predict/"
ADD = "/api/v1/predict/add"


@pytest.fixture
def version(dataset, alice):
    labelled_faces(dataset)
    return embedding_version(dataset, alice, predictions=False)


def upload(data: bytes, name: str = "new-photo.jpg") -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def test_the_page_lists_the_active_version_for_alice_and_bob(client, version, alice, bob):
    for user in (alice, bob):
        client.force_login(user)
        response = client.get(PAGE)
        assert response.status_code == 200
        text = response.content.decode()
        assert f'value="{version.pk}"' in text
        assert "faces · v1 (embedding) · active" in " ".join(text.split())
        assert 'id="dropzone"' in text and 'id="camera-live"' in text


def test_curators_may_add_photos_annotators_see_no_add_button(client, version, alice, bob):
    client.force_login(alice)
    assert 'data-can-add="1"' in client.get(PAGE).content.decode()
    client.force_login(bob)
    assert 'data-can-add="0"' in client.get(PAGE).content.decode()


def test_charlie_sees_no_model_of_a_dataset_he_is_not_on(client, version, charlie):
    client.force_login(charlie)
    text = client.get(PAGE).content.decode()
    assert f'value="{version.pk}"' not in text
    assert "None of your datasets has an active model" in text


def test_inactive_versions_are_listed_for_curators_only(client, version, alice, bob):
    from training.services import model_version_deactivate

    model_version_deactivate(model_version=version)
    client.force_login(alice)
    assert "v1 (embedding) · inactive" in " ".join(client.get(PAGE).content.decode().split())
    client.force_login(bob)
    assert f'value="{version.pk}"' not in client.get(PAGE).content.decode()


def test_the_page_needs_login(client, version):
    response = client.get(PAGE)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_adding_a_photo_stores_it_with_the_models_label_as_a_suggestion(client, version, alice):
    client.force_login(alice)
    data = lfw_photo("male", 2).read_bytes()
    response = client.post(ADD, {"image": upload(data), "model_version": version.pk})
    assert response.status_code == 200, response.content
    body = response.json()
    image = SourceImage.objects.get(pk=body["image"])
    assert image.dataset_id == version.dataset_id
    assert image.status == SourceImage.Status.ALIGNED and image.face_count == 1
    assert image.width == 250 and image.metadata["model_version"] == version.pk
    with default_storage.open(image.file, "rb") as handle:
        assert handle.read() == data  # the original, unchanged
    face = Face.objects.get(image=image)
    prediction = Prediction.objects.get(face=face, model_version=version)
    assert face.suggested_label == prediction.predicted_label in ("female", "male")
    assert face.label == "" and face.label_origin == ""  # a suggestion, never a label
    assert len(face.landmarks) == 68 and face.size_px > 50 and face.sharpness is not None
    assert default_storage.exists(face.crop)
    assert not LabelEvent.objects.filter(face=face).exists()
    assert "suggestions" in body["message"]


def test_the_same_photo_is_not_added_twice(client, version, alice):
    client.force_login(alice)
    data = lfw_photo("female", 3).read_bytes()
    assert client.post(ADD, {"image": upload(data), "model_version": version.pk}).status_code == 200
    response = client.post(ADD, {"image": upload(data, "again.jpg"), "model_version": version.pk})
    assert response.status_code == 409
    assert "already in" in response.json()["error"]["message"]
    assert SourceImage.objects.filter(dataset=version.dataset, original_name__startswith="predicted/").count() == 1


def test_a_photo_without_a_face_is_added_as_no_face(client, version, alice):
    client.force_login(alice)
    response = client.post(ADD, {"image": upload(blank_photo(), "empty.png"), "model_version": version.pk})
    assert response.status_code == 200
    image = SourceImage.objects.get(pk=response.json()["image"])
    assert image.status == SourceImage.Status.NO_FACE and image.faces.count() == 0


def test_bob_the_annotator_may_not_add_photos(client, version, bob):
    client.force_login(bob)
    response = client.post(ADD, {"image": upload(lfw_photo().read_bytes()), "model_version": version.pk})
    assert response.status_code == 403
    assert not SourceImage.objects.filter(original_name__startswith="predicted/").exists()


def test_charlie_may_not_add_to_a_dataset_he_cannot_see(client, version, charlie):
    client.force_login(charlie)
    response = client.post(ADD, {"image": upload(lfw_photo().read_bytes()), "model_version": version.pk})
    assert response.status_code == 404


def test_adding_something_that_is_not_an_image_changes_nothing(client, version, alice):
    client.force_login(alice)
    response = client.post(ADD, {"image": upload(b"just text", "notes.jpg"), "model_version": version.pk})
    assert response.status_code == 415
    assert "plain text" in response.json()["error"]["message"]
    assert not SourceImage.objects.filter(original_name__startswith="predicted/").exists()


def test_adding_without_a_photo_or_version_is_400(client, version, alice):
    client.force_login(alice)
    assert client.post(ADD, {"model_version": version.pk}).status_code == 400
    assert client.post(ADD, {"image": upload(lfw_photo().read_bytes())}).status_code == 400
