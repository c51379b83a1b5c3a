"""Creating, seeing and deleting datasets, and who may do each."""

import pytest

from curator.models import Dataset, Membership


def test_a_curator_creates_a_dataset_and_becomes_its_curator(alice_client, alice):
    response = alice_client.post(
        "/datasets/new/",
        {
            "name": "Gender v1",
            "classes_text": "female, male",
            "crop_size": 128,
            "crop_margin": 0.1,
            "detector": "hog",
            "upsample": 1,
            "detect_max_side": 1024,
            "landmark_set": "outer_eyes_and_nose",
            "keep_undetected_crops": "on",
            "min_faces_per_class": 10,
        },
    )
    dataset = Dataset.objects.get(name="Gender v1")
    assert response.status_code == 302
    assert dataset.classes == ["female", "male"]
    assert (dataset.crop_size, dataset.landmark_set) == (128, "outer_eyes_and_nose")
    assert Membership.objects.get(dataset=dataset, user=alice).role == "curator"


def test_the_form_defaults_to_female_male_and_160_px(alice_client):
    body = alice_client.get("/datasets/new/").content.decode()
    assert 'value="female,male"' in body
    assert 'value="160"' in body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("classes_text", "female", "at least two classes"),
        ("classes_text", "a,a", "must be different"),
        ("classes_text", "ok,<script>", "not a valid class name"),
        ("crop_size", "8", "between 32 and 1024"),
        ("upsample", "9", "too slow"),
        ("crop_margin", "3", "between 0 and 1"),
    ],
)
def test_bad_dataset_settings_are_explained(alice_client, field, value, message):
    data = {
        "name": "x",
        "classes_text": "female,male",
        "crop_size": 160,
        "crop_margin": 0,
        "detector": "hog",
        "upsample": 1,
        "detect_max_side": 1024,
        "landmark_set": "inner_eyes_and_bottom_lip",
        "min_faces_per_class": 10,
    }
    data[field] = value
    response = alice_client.post("/datasets/new/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Dataset.objects.exists()


def test_annotators_may_not_create_datasets(bob_client):
    assert bob_client.get("/datasets/new/").status_code == 403
    assert bob_client.post("/datasets/new/", {"name": "x", "classes_text": "a,b"}).status_code == 403


def test_the_dataset_page_is_for_its_members_only(alice_client, bob_client, dataset, client, charlie):
    assert alice_client.get(f"/datasets/{dataset.pk}/").status_code == 200
    assert bob_client.get(f"/datasets/{dataset.pk}/").status_code == 200
    client.force_login(charlie)
    assert client.get(f"/datasets/{dataset.pk}/").status_code == 404
    assert client.get("/datasets/999999/").status_code == 404


def test_staff_see_every_dataset(client, admin_user, dataset):
    client.force_login(admin_user)
    assert client.get(f"/datasets/{dataset.pk}/").status_code == 200


def test_deleting_needs_the_name_typed(alice_client, dataset):
    alice_client.post(f"/datasets/{dataset.pk}/delete/", {"confirm_name": "nope"})
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_annotators_may_not_delete(bob_client, dataset):
    assert bob_client.post(f"/datasets/{dataset.pk}/delete/", {"confirm_name": "faces"}).status_code == 403
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_forms_need_a_csrf_token(alice, dataset):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(f"/datasets/{dataset.pk}/delete/", {"confirm_name": "faces"}).status_code == 403


def test_new_datasets_start_from_the_deployment_defaults(alice_client, alice, settings):
    from curator.services.datasets import dataset_create

    settings.CURATOR_ALIGN_CROP_SIZE, settings.CURATOR_DETECT_MAX_SIDE = 112, 800
    assert 'value="112"' in alice_client.get("/datasets/new/").content.decode()
    dataset = dataset_create(user=alice, name="defaults")
    assert (dataset.crop_size, dataset.detect_max_side, dataset.classes) == (112, 800, ["female", "male"])
