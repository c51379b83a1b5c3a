"""Who may do what, page by page and endpoint by endpoint: alice curates the dataset, bob
annotates it, charlie is not on it; a guessed dataset id answers 404 like a missing one."""

import json

import pytest
from django.test import Client

from curator.models import Dataset, Face
from labeling import services
from labeling.models import BulkAction
from tests.labeling.factories import make_faces


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 6, labels=["female", "male"])


def as_user(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


READ_PAGES = ["/labeling/{ds}/", "/labeling/{ds}/history/", "/labeling/{ds}/curate/", "/labeling/{ds}/duplicates/"]


@pytest.mark.parametrize("page", READ_PAGES)
def test_alice_and_bob_see_the_pages_charlie_and_guessed_ids_get_404(alice, bob, charlie, dataset, faces, page):
    assert as_user(alice).get(page.format(ds=dataset.pk)).status_code == 200
    assert as_user(bob).get(page.format(ds=dataset.pk)).status_code == 200
    assert as_user(charlie).get(page.format(ds=dataset.pk)).status_code == 404
    assert as_user(alice).get(page.format(ds=dataset.pk + 999)).status_code == 404


def test_anonymous_visitors_are_sent_to_login(dataset, faces):
    response = Client().get(f"/labeling/{dataset.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response.url
    assert Client().get(f"/api/v1/datasets/{dataset.pk}/faces/").status_code in (401, 403)


def test_face_detail_of_another_dataset_is_404(alice, dataset, faces):
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 1, start=40)[0]
    assert as_user(alice).get(f"/labeling/{dataset.pk}/faces/{foreign.pk}/").status_code == 404
    assert as_user(alice).get(f"/labeling/{other.pk}/faces/{foreign.pk}/").status_code == 404


def change(client, ds_id, body):
    return client.post(f"/api/v1/datasets/{ds_id}/label-changes/", json.dumps(body), content_type="application/json")


def test_bob_may_relabel_charlie_may_not(bob, charlie, dataset, faces):
    body = {"faces": [faces[0].pk], "changes": {"label": "male"}}
    assert change(as_user(charlie), dataset.pk, body).status_code == 404
    assert Face.objects.get(pk=faces[0].pk).label == "female"
    assert change(as_user(bob), dataset.pk, body).status_code == 200
    assert as_user(charlie).post(f"/api/v1/datasets/{dataset.pk}/undo/").status_code == 404


def test_bob_cannot_touch_faces_of_a_dataset_he_is_not_on_through_his_own(bob, dataset, faces):
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 1, start=40)[0]
    response = change(as_user(bob), dataset.pk, {"faces": [foreign.pk], "changes": {"label": "male"}})
    assert response.status_code == 400 and "not faces of this dataset" in response.json()["error"]["message"]
    assert change(as_user(bob), other.pk, {"faces": [foreign.pk], "changes": {"label": "male"}}).status_code == 404


def test_bob_reverts_his_own_actions_but_not_alices(alice, bob, dataset, faces):
    own = services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes={"is_unsure": True})
    alices = services.faces_update(user=alice, dataset=dataset, faces=[faces[1].pk], changes={"is_unsure": True})
    b = as_user(bob)
    assert b.get(f"/labeling/{dataset.pk}/history/{alices.pk}/revert/").status_code == 403
    assert b.post(f"/labeling/{dataset.pk}/history/{alices.pk}/revert/").status_code == 403
    assert Face.objects.get(pk=faces[1].pk).is_unsure
    assert b.post(f"/labeling/{dataset.pk}/history/{own.pk}/revert/").status_code == 302
    assert not Face.objects.get(pk=faces[0].pk).is_unsure
    # alice, the curator, may revert anyone's
    assert as_user(alice).post(f"/labeling/{dataset.pk}/history/{alices.pk}/revert/").status_code == 302
    assert as_user(alice).get(f"/labeling/{dataset.pk}/history/999999/revert/").status_code == 404


CURATOR_POSTS = [
    ("/labeling/{ds}/curate/rules/", {"min_size_px": "100"}),
    ("/labeling/{ds}/curate/min-per-class/", {"minimum": "2"}),
    ("/labeling/{ds}/curate/splits/", {"seed": "1"}),
    ("/labeling/{ds}/curate/exports/", {}),
    ("/labeling/{ds}/duplicates/keep/", {"keep": "1", "faces": "1,2"}),
]


@pytest.mark.parametrize(("url", "data"), CURATOR_POSTS)
def test_curation_actions_are_for_curators_only(alice, bob, charlie, dataset, faces, url, data):
    assert as_user(charlie).post(url.format(ds=dataset.pk), data).status_code == 404
    assert as_user(bob).post(url.format(ds=dataset.pk), data).status_code == 403
    assert not BulkAction.objects.exists()
    assert as_user(alice).post(url.format(ds=dataset.pk), data).status_code == 302


def test_export_download_is_for_curators_only(alice, bob, charlie, dataset, faces):
    name = services.export_create(user=alice, dataset=dataset).rsplit("/", 1)[-1]
    url = f"/labeling/{dataset.pk}/curate/exports/{name}"
    assert as_user(charlie).get(url).status_code == 404
    assert as_user(bob).get(url).status_code == 403
    response = as_user(alice).get(url)
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    assert as_user(alice).get(f"/labeling/{dataset.pk}/curate/exports/..%2Fsecret.zip").status_code == 404
    assert as_user(alice).get(f"/labeling/{dataset.pk}/curate/exports/missing.zip").status_code == 404


def test_curation_page_hides_curator_forms_from_bob(alice, bob, dataset, faces):
    assert "Assign splits" not in as_user(bob).get(f"/labeling/{dataset.pk}/curate/").content.decode()
    assert "Assign splits" in as_user(alice).get(f"/labeling/{dataset.pk}/curate/").content.decode()


def test_staff_sees_every_dataset(admin_user, dataset, faces):
    assert as_user(admin_user).get(f"/labeling/{dataset.pk}/").status_code == 200


# --- API ------------------------------------------------------------------------------------------

API_GETS = [
    "/api/v1/datasets/{ds}/",
    "/api/v1/datasets/{ds}/faces/",
    "/api/v1/datasets/{ds}/faces/{face}/",
    "/api/v1/datasets/{ds}/actions/",
]


@pytest.mark.parametrize("url", API_GETS)
def test_api_reads_for_members_only(alice, bob, charlie, dataset, faces, url):
    u = url.format(ds=dataset.pk, face=faces[0].pk)
    assert as_user(alice).get(u).status_code == 200
    assert as_user(bob).get(u).status_code == 200
    assert as_user(charlie).get(u).status_code == 404
    assert as_user(alice).get(url.format(ds=dataset.pk + 999, face=faces[0].pk)).status_code == 404


API_CURATOR_POSTS = [
    ("/api/v1/datasets/{ds}/splits/", {"seed": 1}),
    ("/api/v1/datasets/{ds}/rules/", {"min_size_px": 100, "confirm_large": True}),
    ("/api/v1/datasets/{ds}/exports/", {}),
]


@pytest.mark.parametrize(("url", "data"), API_CURATOR_POSTS)
def test_api_curation_for_curators_only(alice, bob, charlie, dataset, faces, url, data):
    u = url.format(ds=dataset.pk)
    assert as_user(charlie).post(u, data, content_type="application/json").status_code == 404
    assert as_user(bob).post(u, data, content_type="application/json").status_code == 403
    assert as_user(alice).post(u, data, content_type="application/json").status_code in (200, 201)


def test_api_exports_listing_is_for_curators(alice, bob, dataset, faces):
    assert as_user(bob).get(f"/api/v1/datasets/{dataset.pk}/exports/").status_code == 403
    assert as_user(alice).get(f"/api/v1/datasets/{dataset.pk}/exports/").json() == []


def test_api_dataset_list_shows_only_visible(alice, charlie, dataset, faces):
    Dataset.objects.create(name="charlies")
    assert [d["name"] for d in as_user(alice).get("/api/v1/datasets/").json()] == ["faces"]
    assert as_user(charlie).get("/api/v1/datasets/").json() == []


def test_api_revert_of_someone_elses_action_needs_a_curator(alice, bob, charlie, dataset, faces):
    action = services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"label": "male"})
    url = f"/api/v1/datasets/{dataset.pk}/actions/{action.pk}/revert/"
    assert as_user(charlie).post(url).status_code == 404
    assert as_user(bob).post(url).status_code == 403
    assert as_user(alice).post(url).status_code == 200
    assert as_user(alice).post(f"/api/v1/datasets/{dataset.pk}/actions/99999/revert/").status_code == 404
