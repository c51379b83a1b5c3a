"""Input no number or name can mean gives 400 (API) or the form again with a message (pages),
never 500: NaN and infinities in rule thresholds, split ratios and training settings, metadata keys
with quotes, spaces or NUL on the map's colours, and NUL in a media path (404)."""

import json

import pytest
from django.urls import reverse

from curator.models import Face
from labeling.models import BulkAction
from tests.embeddings.factories import descriptors_store
from tests.embeddings.test_uniqueness import _stored_map
from tests.labeling.factories import make_faces
from training.models import TrainingJob

NOT_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"]


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 6, labels=["female", "male"], metadata=[{"race": "x", "odd key": "y"}] * 6)


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("value", NOT_FINITE)
def test_rule_thresholds_that_are_not_finite_are_400_in_the_api(alice_client, dataset, faces, value):
    url = f"/api/v1/datasets/{dataset.pk}/rules/"
    for body in ({"min_sharpness": value}, {"min_sharpness": value, "preview": True}):
        response = post_json(alice_client, url, body)
        assert response.status_code == 400, response.content
        assert "must be a finite number" in response.json()["error"]["message"]
    assert not BulkAction.objects.exists()


@pytest.mark.parametrize("value", NOT_FINITE)
def test_rule_thresholds_that_are_not_finite_are_explained_on_the_pages(alice_client, dataset, faces, value):
    preview = alice_client.get(f"/labeling/{dataset.pk}/curate/rules/preview/", {"min_sharpness": value})
    assert preview.status_code in (200, 302)
    applied = alice_client.post(f"/labeling/{dataset.pk}/curate/rules/", {"min_sharpness": value}, follow=True)
    assert applied.status_code == 200
    assert "must be a finite number" in applied.content.decode()
    assert not Face.objects.filter(is_excluded=True).exists()


@pytest.mark.parametrize("value", NOT_FINITE)
def test_split_ratios_that_are_not_finite_are_refused(alice_client, dataset, faces, value):
    response = post_json(alice_client, f"/api/v1/datasets/{dataset.pk}/splits/", {"ratios": [value, 0.15, 0.15]})
    assert response.status_code == 400
    assert "must be a finite number" in response.json()["error"]["message"]
    page = alice_client.post(f"/labeling/{dataset.pk}/curate/splits/", {"train": value, "val": 15}, follow=True)
    assert page.status_code == 200 and "must be a finite number" in page.content.decode()
    assert not Face.objects.exclude(split="").exists()


@pytest.mark.parametrize("ratios", ["abc", 7, {"a": 1}, [True, 1, 1]])
def test_split_ratios_that_are_not_a_list_of_numbers_are_400(alice_client, dataset, faces, ratios):
    response = post_json(alice_client, f"/api/v1/datasets/{dataset.pk}/splits/", {"ratios": ratios})
    assert response.status_code == 400


@pytest.mark.parametrize("value", [*NOT_FINITE, True])
def test_training_settings_that_are_not_finite_are_400(alice_client, dataset, faces, value):
    body = {"dataset": dataset.pk, "architecture": "embedding", "config": {"learning_rate": value}}
    response = post_json(alice_client, "/api/v1/training/jobs/", body)
    assert response.status_code == 400, response.content
    assert "learning_rate" in response.json()["error"]["fields"]["config"]
    page = alice_client.post(
        f"/training/datasets/{dataset.pk}/train/", {"architecture": "embedding", "learning_rate": str(value)}
    )
    assert page.status_code == 200 and '<div class="error">' in page.content.decode()
    assert not TrainingJob.objects.exists()


def test_an_integer_setting_of_1e400_is_400_not_an_overflow(alice_client, dataset, faces):
    body = json.dumps({"dataset": dataset.pk, "architecture": "embedding", "config": {"seed": 1}}).replace(
        '"seed": 1', '"seed": 1e400'
    )
    response = alice_client.post("/api/v1/training/jobs/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("key", ["it's", "other key", "a\x00b", "x__contains", "race__0", "a;b--", "k" * 300])
def test_map_colours_by_any_metadata_key_is_an_answer_or_a_400(alice_client, dataset, faces, key):
    descriptors_store(faces)
    _stored_map(dataset, faces)
    response = alice_client.get(reverse("labeling-api-map-colours", args=[dataset.pk]), {"by": f"m_{key}"})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["by"]


def test_map_colours_by_a_key_with_a_space_works(alice_client, dataset, faces):
    descriptors_store(faces)
    _stored_map(dataset, faces)
    response = alice_client.get(reverse("labeling-api-map-colours", args=[dataset.pk]), {"by": "m_odd key"})
    assert response.status_code == 200
    assert response.json()["categories"] == ["y", "none"]


@pytest.mark.parametrize("path", ["%00.jpg", "faces/%00.jpg", "faces/a%00.jpg", "a\x01.jpg"])
def test_nul_or_control_characters_in_a_media_path_are_404(alice_client, dataset, path):
    assert alice_client.get(f"/media/datasets/{dataset.pk}/{path}").status_code == 404


def test_a_dataset_id_of_unicode_digits_in_a_media_path_is_404(alice_client, dataset):
    assert alice_client.get("/media/datasets/\u00b2/faces/a.jpg").status_code == 404
