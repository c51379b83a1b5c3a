"""The face page (/datasets/<id>/faces/<id>/): the photo with every face boxed, the photo's other
faces, the label state, the whole history in words, every model version's prediction, quality,
metadata, and previous/next in the grid's filter and order (or by id)."""

import re

import pytest
from django.test import Client

from curator.models import Dataset
from labeling import services
from tests.labeling.factories import make_faces, version_with_predictions


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 12, labels=["female", "male", "male"], per_image=3)


def url(dataset, face, query: str = "") -> str:
    return f"/datasets/{dataset.pk}/faces/{face.pk}/" + (f"?{query}" if query else "")


def test_page_shows_photo_siblings_state_history_predictions_quality_metadata(alice, bob, bob_client, dataset, faces):
    face = faces[4]  # the second face of the second photo
    services.faces_update(user=bob, dataset=dataset, faces=[face.pk], changes={"label": "female"})
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"is_excluded": True})
    version_with_predictions(dataset, faces, number=1)
    version_with_predictions(dataset, faces[:3], number=2)  # v2 never saw this face
    response = bob_client.get(url(dataset, face))
    assert response.status_code == 200
    body = response.content.decode()
    assert f"/media/{face.image.file}" in body and 'id="photo"' in body
    assert body.count('<polygon class="box') == 3 and body.count('class="box current"') == 1
    for other in faces[3:6]:
        assert f'href="/datasets/{dataset.pk}/faces/{other.pk}/"' in body or other.pk == face.pk
    assert len(re.findall(r'class="photo-face( current)?"', body)) == 3
    # History in words, newest first, with who.
    events = response.context["events"]
    assert [e["text"] for e in events] == ["excluded: no → yes", "label: male → female"]
    assert "alice · excluded: no → yes" in body and "bob · label: male → female" in body
    assert f"/labeling/{dataset.pk}/history/?face={face.pk}" in body
    # Every version: v2 has no prediction for this face, v1 has one.
    rows = response.context["all_predictions"]
    assert [r["version"].number for r in rows] == [2, 1]
    assert rows[0]["prediction"] is None and rows[1]["prediction"]["label"] in ("female", "male")
    assert "no prediction for this face" in body
    assert f"{face.size_px} px" in body and "age" in body and "race" in body
    # Relabel controls post to the API the grid uses.
    assert f'data-change-url="/api/v1/datasets/{dataset.pk}/label-changes/"' in body
    assert 'data-change=\'{"label": "male"}\'' in body and "data-change='{\"is_excluded\": false}'" in body


def test_previous_and_next_by_id(bob_client, dataset, faces):
    page = bob_client.get(url(dataset, faces[5])).context["neighbours"]
    assert (page["previous"], page["next"]) == (faces[4].pk, faces[6].pk)
    first = bob_client.get(url(dataset, faces[0])).context["neighbours"]
    assert first["previous"] is None
    body = bob_client.get(url(dataset, faces[11])).content.decode()
    assert "last face ›" in body


def test_previous_and_next_follow_the_grid_filter_and_order(bob, bob_client, dataset, faces):
    males = sorted((f for f in faces if f.label == "male"), key=lambda f: (-f.size_px, -f.pk))
    query = "label=male&sort=-size"
    middle = males[3]
    response = bob_client.get(url(dataset, middle, query))
    n = response.context["neighbours"]
    assert (n["previous"], n["next"], n["position"], n["count"]) == (males[2].pk, males[4].pk, 4, len(males))
    body = response.content.decode()
    assert f'href="/datasets/{dataset.pk}/faces/{males[4].pk}/?label=male&amp;sort=-size"' in body
    assert "label male, sorted by size (descending)" in body
    assert f'href="/labeling/{dataset.pk}/?label=male&amp;sort=-size"' in body
    # Relabelled out of the filter: the filter's faces with the nearest ids.
    services.faces_update(user=bob, dataset=dataset, faces=[middle.pk], changes={"label": "female"})
    n = bob_client.get(url(dataset, middle, query)).context["neighbours"]
    assert not n["in_filter"] and n["count"] == len(males) - 1
    ids = sorted(f.pk for f in males if f.pk != middle.pk)
    assert n["next"] == min((i for i in ids if i > middle.pk), default=None)


def test_a_bad_filter_in_the_link_falls_back_to_ids_and_says_so(bob_client, dataset, faces):
    response = bob_client.get(url(dataset, faces[1], "label=cat"))
    assert response.status_code == 200
    assert "The filter in this link is not valid, so previous/next go by id" in response.content.decode()
    assert response.context["neighbours"]["next"] == faces[2].pk


def test_grid_panel_links_to_the_face_page_with_the_grid_filter(bob_client, dataset, faces):
    body = bob_client.get(f"/labeling/{dataset.pk}/faces/{faces[1].pk}/", {"label": "male"}).content.decode()
    assert f'href="/datasets/{dataset.pk}/faces/{faces[1].pk}/?label=male" id="open-face-page"' in body
    grid = bob_client.get(f"/labeling/{dataset.pk}/", {"label": "male"}).content.decode()
    assert re.search(r'data-detail-url="/labeling/\d+/faces/0/\?label=male"', grid)


def test_who_may_see_a_face_page(alice, charlie, dataset, faces):
    assert Client().get(url(dataset, faces[0])).status_code == 302  # to the login page
    charlie_client = Client()
    charlie_client.force_login(charlie)
    assert charlie_client.get(url(dataset, faces[0])).status_code == 404
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 1, start=40)[0]
    alice_client = Client()
    alice_client.force_login(alice)
    assert alice_client.get(f"/datasets/{dataset.pk}/faces/{foreign.pk}/").status_code == 404
    assert alice_client.get(f"/datasets/{dataset.pk}/faces/999999/").status_code == 404
