"""The grid page: thumbnails as media URLs, filters kept in the URL, sorting, bad filters and
pages past the end, and the API's change/undo endpoints as the grid's script calls them."""

import json

import pytest

from curator.models import Face, ImportBatch
from labeling.models import BulkAction
from tests.labeling.factories import make_faces
from training.models import ModelVersion, Prediction


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 30, labels=["female", "male", ""])


def grid_ids(response) -> list[int]:
    return [t["id"] for t in response.context["faces"]]


def test_grid_shows_thumbnails_as_cached_media_files_with_badges(bob_client, dataset, faces):
    response = bob_client.get(f"/labeling/{dataset.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'src="/media/datasets/{dataset.pk}/faces/0.jpg"' in body
    assert "base64" not in body
    assert 'class="badge c0">female<' in body and 'class="badge c1">male<' in body
    # The class keys are in the page's key map (the `?` overlay and the grid's script read it).
    assert '{"key": "f", "text": "label female"}' in body and '{"key": "m", "text": "label male"}' in body
    assert len(grid_ids(response)) == 30
    image = bob_client.get(f"/media/datasets/{dataset.pk}/faces/0.jpg")
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert "max-age" in image["Cache-Control"]


def test_filters_combine_and_stay_in_the_links(bob_client, dataset, faces):
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"label": "male", "min_size": 100, "sort": "-sharpness"})
    expected = [
        f.pk
        for f in sorted(
            (f for f in faces if f.label == "male" and f.size_px >= 100), key=lambda f: (-f.sharpness, -f.pk)
        )
    ]
    assert grid_ids(response) == expected and expected
    assert response.context["flt"].querystring == "label=male&min_size=100&sort=-sharpness"


def test_sort_by_a_metadata_column(bob_client, dataset, faces):
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"sort": "-m_age"})
    ages = [Face.objects.get(pk=i).image.metadata["age"] for i in grid_ids(response)]
    assert ages == sorted(ages, reverse=True) and len(ages) == 30
    assert '<option value="-m_age" selected>' in response.content.decode()


@pytest.mark.parametrize(
    ("params", "check"),
    [
        ({"label": "unlabelled"}, lambda f: f.label == ""),
        ({"split": "none"}, lambda f: True),
        ({"file": "0003-"}, lambda f: f.image.original_name.startswith("photos/0003-")),
        ({"max_abs_yaw": "10"}, lambda f: abs(f.yaw) <= 10),
        ({"min_score": "0.9"}, lambda f: f.detector_score >= 0.9),
        ({"m_age_min": "20", "m_age_max": "30"}, lambda f: 20 <= f.image.metadata["age"] <= 30),
        ({"m_race": "1"}, lambda f: f.image.metadata["race"] == 1),
        ({"outcome": "single"}, lambda f: True),
        ({"outcome": "no_face"}, lambda f: f.whole_image),
    ],
)
def test_each_filter_selects_the_right_faces(bob_client, dataset, faces, params, check):
    response = bob_client.get(f"/labeling/{dataset.pk}/", params)
    assert response.status_code == 200
    assert set(grid_ids(response)) == {f.pk for f in faces if check(f)}


def test_batch_unsure_and_excluded_filters(bob, bob_client, dataset, faces):
    batch = ImportBatch.objects.create(dataset=dataset, source="zip", source_name="second.zip")
    extra = make_faces(dataset, 3, labels=["female"], batch=batch, start=100)
    assert set(grid_ids(bob_client.get(f"/labeling/{dataset.pk}/", {"batch": batch.pk}))) == {f.pk for f in extra}
    Face.objects.filter(pk=faces[0].pk).update(is_unsure=True)
    Face.objects.filter(pk=faces[1].pk).update(is_excluded=True)
    assert grid_ids(bob_client.get(f"/labeling/{dataset.pk}/", {"label": "unsure"})) == [faces[0].pk]
    assert grid_ids(bob_client.get(f"/labeling/{dataset.pk}/", {"label": "excluded"})) == [faces[1].pk]
    assert faces[1].pk not in grid_ids(bob_client.get(f"/labeling/{dataset.pk}/", {"label": "included"}))


def test_prediction_filters(alice, bob_client, dataset, faces):
    mv = ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="cnn", classes=["female", "male"], is_active=True
    )
    for i, f in enumerate(faces[:6]):
        Prediction.objects.create(
            face=f,
            model_version=mv,
            probabilities=[0.8, 0.2],
            predicted_label="female",
            confidence=0.5 + i / 20,
            disagrees=f.label == "male",
        )
    url = f"/labeling/{dataset.pk}/"
    assert set(grid_ids(bob_client.get(url, {"disagrees": "1"}))) == {f.pk for f in faces[:6] if f.label == "male"}
    agreeing = {f.pk for f in faces} - {f.pk for f in faces[:6] if f.label == "male"}
    assert set(grid_ids(bob_client.get(url, {"disagrees": "0"}))) == agreeing
    assert set(grid_ids(bob_client.get(url, {"min_conf": "0.7"}))) == {f.pk for f in faces[4:6]}
    assert grid_ids(bob_client.get(url, {"predicted": "female", "sort": "-confidence"}))[0] == faces[5].pk


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"label": "cat"}, "Unknown label “cat”"),
        ({"split": "holdout"}, "Unknown split “holdout”"),
        ({"min_size": "big"}, "“big” is not a number"),
        ({"sort": "colour"}, "Cannot sort by “colour”"),
        ({"batch": "99999"}, "Import batch 99999 is not a batch of this dataset"),
        ({"outcome": "many"}, "Unknown photo outcome"),
        ({"bogus": "1"}, "Unknown filter “bogus”"),
        ({"per_page": "7"}, "Faces per page must be one of"),
        ({"page": "abc"}, "not a page number"),
        ({"predicted": "female"}, "no active model version"),
        ({"min_size": "nan"}, "not a usable number"),
    ],
)
def test_nonsense_filters_get_a_clear_message_and_show_nothing(bob_client, dataset, faces, params, message):
    response = bob_client.get(f"/labeling/{dataset.pk}/", params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert grid_ids(response) == []


def test_page_past_the_end(bob_client, dataset, faces):
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"page": 5, "per_page": 60})
    assert response.status_code == 404
    assert "Page 5 is past the end: this filter has 1 page." in response.content.decode()


def test_enter_link_points_to_the_next_page_with_the_same_filter(bob_client, dataset):
    make_faces(dataset, 130, labels=["female"])
    body = bob_client.get(f"/labeling/{dataset.pk}/", {"label": "female"}).content.decode()
    # The next page continues from this page's last face (keyset, issue 21).
    last = list(Face.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True))[119]
    assert f'data-next="?label=female&amp;page=2&amp;after={last}"' in body


# The grid's script changes labels and undoes through the REST API (session + CSRF).
CHANGE = "/api/v1/datasets/{}/label-changes/"
UNDO = "/api/v1/datasets/{}/undo/"


def post_json(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def test_change_endpoint_saves_and_returns_the_new_state(bob_client, dataset, faces):
    f = faces[2]
    response = post_json(
        bob_client,
        CHANGE.format(dataset.pk),
        {"faces": [f.pk], "versions": {str(f.pk): 1}, "changes": {"label": "male"}},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["face_count"] == 1 and data["message"] == "Set label: 1 face changed."
    assert data["faces"] == [
        {"id": f.pk, "version": 2, "label": "male", "is_unsure": False, "is_excluded": False, "split": ""}
    ]


def test_change_endpoint_refuses_a_stale_save_with_409(alice_client, bob, dataset, faces):
    from labeling import services

    f = faces[0]
    services.faces_update(user=bob, dataset=dataset, faces=[f.pk], changes={"label": "male"})
    response = post_json(
        alice_client,
        CHANGE.format(dataset.pk),
        {"faces": [f.pk], "versions": {str(f.pk): 1}, "changes": {"is_unsure": True}},
    )
    assert response.status_code == 409
    data = response.json()
    assert "since you loaded the page" in data["error"]["message"] and data["current"][0]["label"] == "male"
    assert data["error"]["code"] == "stale_face"
    assert Face.objects.get(pk=f.pk).is_unsure is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"faces": [], "changes": {"label": "male"}}, "No faces selected"),
        ({"faces": ["x"], "changes": {"label": "male"}}, "valid integer"),
        ({"changes": {"label": "male"}}, "Give `faces`"),
        ({"faces": [1], "changes": {"label": "dog"}}, "Unknown label"),
        ({"filter": "label=cat", "changes": {"label": "male"}}, "The filter is not valid"),
        (
            {"filter": "label=male", "expected_count": 99, "changes": {"is_unsure": True}},
            "not the 99 you saw",
        ),
    ],
)
def test_change_endpoint_bad_input(bob_client, dataset, faces, body, message):
    response = post_json(bob_client, CHANGE.format(dataset.pk), body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not BulkAction.objects.exists()


def test_change_endpoint_rejects_invalid_json(bob_client, dataset, faces):
    response = bob_client.post(CHANGE.format(dataset.pk), "{nope", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "parse_error"


def test_bulk_change_of_all_faces_matching_a_filter_and_undo(bob_client, dataset, faces):
    males = [f.pk for f in faces if f.label == "male"]
    response = post_json(
        bob_client,
        CHANGE.format(dataset.pk),
        {"filter": "label=male", "expected_count": len(males), "changes": {"split": "test"}, "confirm_large": True},
    )
    assert response.json()["face_count"] == len(males)
    assert set(Face.objects.filter(split="test").values_list("id", flat=True)) == set(males)
    action = BulkAction.objects.get()
    assert action.params["filter"] == {"label": "male"}
    undo = bob_client.post(UNDO.format(dataset.pk))
    assert undo.status_code == 200
    undo = undo.json()
    assert undo["reverted"] == len(males) and "Undid assign split" in undo["message"]
    assert not Face.objects.filter(split="test").exists()
    nothing = bob_client.post(UNDO.format(dataset.pk))
    assert nothing.status_code == 400 and "Nothing to undo" in nothing.json()["error"]["message"]


def test_detail_panel_shows_photo_landmarks_siblings_history(bob, bob_client, dataset):
    from labeling import services

    faces = make_faces(dataset, 4, labels=["female"], per_image=2)
    services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes={"label": "male"})
    body = bob_client.get(f"/labeling/{dataset.pk}/faces/{faces[0].pk}/").content.decode()
    assert f"/media/{faces[0].image.file}" in body
    assert body.count('class="lm"') == 68
    assert body.count('<polygon class="box') == 2  # both faces of the photo boxed
    assert f"face {faces[1].pk}" in body
    assert "bob · Label: female → male" in body
    assert "age" in body and "race" in body
