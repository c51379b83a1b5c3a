"""POST /api/v1/predict on real photos with a model trained in the test: faces, boxes, labels,
probabilities and timings; the choice of model version; and every bad input a client can send."""

import io

import pytest
from PIL import Image
from rest_framework.authtoken.models import Token

from curator.models import Dataset, Membership
from tests.training.predict_support import blank_photo, embedding_version, labelled_faces, lfw_photo, photo_640x480

URL = "/api/v1/predict"


@pytest.fixture
def version(dataset, alice):
    labelled_faces(dataset)
    return embedding_version(dataset, alice, predictions=False)


def token(user) -> str:
    return "Token " + Token.objects.get_or_create(user=user)[0].key


def post_raw(client, data: bytes, auth: str, content_type: str = "image/jpeg", query: str = ""):
    return client.post(URL + query, data=data, content_type=content_type, HTTP_AUTHORIZATION=auth)


def test_raw_body_gives_every_face_with_box_label_probabilities_and_timings(client, version, alice):
    response = post_raw(client, lfw_photo("female").read_bytes(), token(alice))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == {
        "id": version.pk,
        "number": version.number,
        "dataset": version.dataset_id,
        "architecture": "embedding",
        "classes": ["female", "male"],
        "is_active": True,
    }
    assert body["image"] == {"width": 250, "height": 250}
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    box = face["box"]
    # LFW deep-funneled photos have their face in the middle.
    assert 40 < box["left"] < box["right"] < 210 and 40 < box["top"] < box["bottom"] < 230
    assert set(face["probabilities"]) == {"female", "male"}
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert face["confidence"] == pytest.approx(face["probabilities"][face["label"]], abs=1e-6)
    assert set(body["timings_ms"]) == {"decode", "load", "detect_align", "classify", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["detect_align"]


def test_multipart_upload_gives_the_same_answer_as_the_raw_body(client, version, alice):
    auth = token(alice)
    data = lfw_photo("male").read_bytes()
    raw = post_raw(client, data, auth).json()
    upload = io.BytesIO(data)
    upload.name = "photo.jpg"
    response = client.post(URL, {"image": upload, "model_version": version.pk}, HTTP_AUTHORIZATION=auth)
    assert response.status_code == 200, response.content
    assert response.json()["faces"] == raw["faces"]


def test_a_640x480_photo_with_one_face_is_found_at_its_place(client, version, alice):
    response = post_raw(client, photo_640x480("male", 1), token(alice))
    body = response.json()
    assert body["image"] == {"width": 640, "height": 480}
    assert len(body["faces"]) == 1
    assert 195 < body["faces"][0]["box"]["left"] < body["faces"][0]["box"]["right"] < 445


def test_a_photo_without_a_face_is_an_empty_list_not_an_error(client, version, alice):
    response = post_raw(client, blank_photo(), token(alice), content_type="image/png")
    assert response.status_code == 200
    assert response.json()["faces"] == []


def test_missing_or_wrong_token_is_401_and_the_server_keeps_serving(client, version, alice):
    data = lfw_photo().read_bytes()
    assert post_raw(client, data, "").status_code == 401
    assert post_raw(client, data, "Token not-a-token").status_code == 401
    assert post_raw(client, data, token(alice)).status_code == 200


def test_a_session_works_too_for_the_predict_page(client, version, alice):
    client.force_login(alice)
    response = client.post(URL, data=lfw_photo().read_bytes(), content_type="image/jpeg")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("data", "content_type", "needle"),
    [
        (b"hello, this is not a picture", "image/jpeg", "plain text"),
        (b"<html><body>no</body></html>", "text/html", "HTML"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png", "Not a usable image"),
        (b"PK\x03\x04" + b"\x00" * 40, "application/octet-stream", "zip"),
    ],
)
def test_non_image_bodies_are_415_with_the_reason(client, version, alice, data, content_type, needle):
    auth = token(alice)
    response = post_raw(client, data, auth, content_type=content_type)
    assert response.status_code == 415
    assert needle in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "bad_image"
    assert post_raw(client, lfw_photo().read_bytes(), auth).status_code == 200


def test_an_empty_body_or_a_multipart_without_image_is_400(client, version, alice):
    auth = token(alice)
    response = post_raw(client, b"", auth)
    assert response.status_code == 400
    assert "No image" in response.json()["error"]["message"]
    response = client.post(URL, {"model_version": version.pk}, HTTP_AUTHORIZATION=auth)
    assert response.status_code == 400
    assert "`image`" in response.json()["error"]["message"]


def test_too_many_pixels_is_413_before_decoding(client, version, alice, settings):
    settings.CURATOR_PREDICT_MAX_PIXELS = 100_000
    buffer = io.BytesIO()
    Image.new("RGB", (1000, 1000), (200, 200, 200)).save(buffer, "PNG")
    response = post_raw(client, buffer.getvalue(), token(alice), content_type="image/png")
    assert response.status_code == 413
    assert "1,000,000 pixels" in response.json()["error"]["message"]


def test_too_many_bytes_is_413(client, version, alice, settings):
    settings.CURATOR_PREDICT_MAX_BYTES = 1000
    auth = token(alice)
    response = post_raw(client, lfw_photo().read_bytes(), auth)
    assert response.status_code == 413
    upload = io.BytesIO(lfw_photo().read_bytes())
    upload.name = "big.jpg"
    assert client.post(URL, {"image": upload}, HTTP_AUTHORIZATION=auth).status_code == 413


def test_a_raw_body_above_the_request_limit_is_413(client, version, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_raw(client, lfw_photo().read_bytes(), token(alice))
    assert response.status_code == 413
    assert "multipart" in response.json()["error"]["message"]


def test_a_version_of_a_dataset_charlie_is_not_on_is_404(client, version, charlie):
    response = post_raw(client, lfw_photo().read_bytes(), token(charlie), query=f"?model_version={version.pk}")
    assert response.status_code == 404
    assert "No model version" in response.json()["error"]["message"]
    response = post_raw(client, lfw_photo().read_bytes(), token(charlie), query=f"?dataset={version.dataset_id}")
    assert response.status_code == 404


def test_a_guessed_version_id_is_404(client, version, alice):
    response = post_raw(client, lfw_photo().read_bytes(), token(alice), query=f"?model_version={version.pk + 999}")
    assert response.status_code == 404


def test_an_inactive_version_is_refused_to_annotators_and_allowed_to_curators(client, version, alice, bob):
    from training.services import model_version_deactivate

    model_version_deactivate(model_version=version)
    query = f"?model_version={version.pk}"
    response = post_raw(client, lfw_photo().read_bytes(), token(bob), query=query)
    assert response.status_code == 409
    assert "not active" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "inactive_version"
    response = post_raw(client, lfw_photo().read_bytes(), token(alice), query=query)
    assert response.status_code == 200
    assert response.json()["model_version"]["is_active"] is False


def test_a_dataset_without_an_active_model_is_409(client, version, alice):
    other = Dataset.objects.create(name="no model yet", created_by=alice)
    Membership.objects.create(dataset=other, user=alice, role=Membership.Role.CURATOR)
    response = post_raw(client, lfw_photo().read_bytes(), token(alice), query=f"?dataset={other.pk}")
    assert response.status_code == 409
    assert "no active model version" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "no_active_model"


def test_without_any_active_model_it_is_409(client, dataset, alice):
    response = post_raw(client, lfw_photo().read_bytes(), token(alice))
    assert response.status_code == 409
    assert "None of your datasets" in response.json()["error"]["message"]


def test_a_version_of_another_dataset_than_the_one_named_is_400(client, version, alice):
    other = Dataset.objects.create(name="other", created_by=alice)
    Membership.objects.create(dataset=other, user=alice, role=Membership.Role.CURATOR)
    query = f"?dataset={other.pk}&model_version={version.pk}"
    response = post_raw(client, lfw_photo().read_bytes(), token(alice), query=query)
    assert response.status_code == 400
    assert "does not belong" in response.json()["error"]["message"]


def test_a_non_numeric_model_version_is_400(client, version, alice):
    response = post_raw(client, lfw_photo().read_bytes(), token(alice), query="?model_version=latest")
    assert response.status_code == 400
    assert "must be an integer" in response.json()["error"]["message"]


def test_get_is_not_allowed(client, version, alice):
    assert client.get(URL, HTTP_AUTHORIZATION=token(alice)).status_code == 405


def test_the_openapi_schema_documents_predict(client, alice):
    client.force_login(alice)
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json() if response["Content-Type"].startswith("application/json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    operation = schema["paths"]["/api/v1/predict"]["post"]
    assert set(operation["requestBody"]["content"]) >= {"multipart/form-data", "image/*", "application/octet-stream"}
    assert {"200", "401", "404", "409", "413", "415"} <= set(operation["responses"])
    assert "PredictResponse" in schema["components"]["schemas"]


def test_the_compiled_forward_pass_matches_the_training_sides_inference(version):
    import numpy as np

    from curator.faces.pipeline import AlignOptions, detect_and_align
    from curator.images import load_rgb
    from training import serving
    from training.inference import load_model_version

    crops = np.stack(
        [
            detect_and_align(load_rgb(lfw_photo(g, i)), AlignOptions.from_dataset(version.dataset))[0].crop
            for g, i in (("female", 0), ("male", 1), ("male", 2))
        ]
    )
    served = serving.loaded_model(version)
    assert serving.loaded_model(version) is served  # loaded once per process
    np.testing.assert_allclose(served.predict_crops(crops), load_model_version(version).predict_crops(crops), atol=1e-5)


def test_a_cnn_version_is_served_with_the_same_probabilities_as_training_computes(client, dataset, alice):
    import numpy as np

    from curator.faces.pipeline import AlignOptions, detect_and_align
    from curator.images import load_rgb
    from tests.training.predict_support import train_embedding
    from training import serving
    from training.inference import load_model_version

    labelled_faces(dataset)
    version = train_embedding(dataset, alice, epochs=1, architecture="cnn")
    crops = np.stack(
        [
            detect_and_align(load_rgb(lfw_photo(g, 0)), AlignOptions.from_dataset(dataset))[0].crop
            for g in ("female", "male")
        ]
    )
    np.testing.assert_allclose(
        serving.loaded_model(version).predict_crops(crops), load_model_version(version).predict_crops(crops), atol=1e-4
    )
    response = post_raw(client, lfw_photo().read_bytes(), token(alice))
    assert response.status_code == 200
    assert response.json()["model_version"]["architecture"] == "cnn"
    assert len(response.json()["faces"]) == 1
