"""Destructive actions are safe: a rule is previewed before it runs, anything over
CURATOR_MAX_ACTION_SHARE of the dataset needs a second confirmation (form, API and service), bulk
changes over "all matching" say how many faces they would change first, and a revert shows what
it will change in words before it acts."""

import pytest
from rest_framework.test import APIClient

from curator.models import Face
from labeling import services
from labeling.models import BulkAction
from tests.labeling.factories import make_faces


@pytest.fixture
def faces(dataset):
    # Sizes are 40 + (7i mod 160) px: 6 of the 40 faces are below 60 px (15 %), 32 below 150 px (80 %).
    return make_faces(dataset, 40, labels=["female", "male"])


def small(faces, below: int) -> set[int]:
    return {f.pk for f in faces if f.size_px < below}


@pytest.fixture
def alice_api(alice) -> APIClient:
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def bob_api(bob) -> APIClient:
    client = APIClient()
    client.force_authenticate(bob)
    return client


# --- The guard itself ---------------------------------------------------------------------------


def test_guard_refuses_above_the_share_unless_confirmed(dataset, faces, settings):
    settings.CURATOR_MAX_ACTION_SHARE = 0.2
    services.action_share_check(dataset=dataset, face_count=8, confirmed_large=False)  # 20 %: fine
    with pytest.raises(services.NeedsConfirmation) as caught:
        services.action_share_check(dataset=dataset, face_count=9, confirmed_large=False)
    assert caught.value.message == "This changes 9 faces, 22.5 % of the dataset; confirm again to go ahead."
    assert isinstance(caught.value, services.LabelingError)
    services.action_share_check(dataset=dataset, face_count=40, confirmed_large=True)
    settings.CURATOR_MAX_ACTION_SHARE = 0.5
    services.action_share_check(dataset=dataset, face_count=20, confirmed_large=False)


def test_rule_service_is_guarded_and_writes_nothing_when_refused(alice, dataset, faces):
    expected = small(faces, 150)
    assert len(expected) > 0.2 * len(faces)
    with pytest.raises(services.NeedsConfirmation, match=f"This changes {len(expected)} faces"):
        services.exclusion_rule_apply(user=alice, dataset=dataset, thresholds={"min_size_px": 150})
    assert not BulkAction.objects.exists() and not Face.objects.filter(is_excluded=True).exists()
    action = services.exclusion_rule_apply(
        user=alice, dataset=dataset, thresholds={"min_size_px": 150}, confirmed_large=True
    )
    assert action.face_count == len(expected)


# --- Rule preview and confirm (the curation page) -------------------------------------------------


def test_rule_preview_shows_count_and_sample_and_changes_nothing(alice_client, dataset, faces):
    expected = small(faces, 60)
    response = alice_client.get(f"/labeling/{dataset.pk}/curate/rules/preview/", {"min_size_px": "60"})
    body = response.content.decode()
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.count == len(expected) and {f.pk for f in preview.sample} <= expected
    assert f"This excludes <b>{len(expected)}</b> faces" in body
    assert 'id="confirm-action"' in body and 'name="confirm_large"' not in body  # under the share
    assert body.count('<img src="/media/') == min(24, len(expected))
    assert not BulkAction.objects.exists() and not Face.objects.filter(is_excluded=True).exists()
    # Confirm: exactly the previewed faces are excluded.
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/rules/", {"min_size_px": "60"}, follow=True)
    assert set(Face.objects.filter(is_excluded=True).values_list("id", flat=True)) == expected
    assert f"Rule applied: {len(expected)} face(s) excluded" in response.content.decode()


def test_a_large_rule_needs_the_checkbox(alice_client, dataset, faces):
    expected = small(faces, 150)
    preview = alice_client.get(f"/labeling/{dataset.pk}/curate/rules/preview/", {"min_size_px": "150"})
    pct = f"{len(expected) / len(faces) * 100:.1f}"
    assert f"I understand this excludes {len(expected)} faces ({pct} %)" in preview.content.decode()
    # Confirm without the checkbox: back to the preview with the message, nothing changed.
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/rules/", {"min_size_px": "150"}, follow=True)
    body = response.content.decode()
    assert f"This changes {len(expected)} faces, {pct} % of the dataset; confirm again to go ahead." in body
    assert response.redirect_chain[-1][0].startswith(f"/labeling/{dataset.pk}/curate/rules/preview/?min_size_px=150")
    assert not Face.objects.filter(is_excluded=True).exists()
    alice_client.post(f"/labeling/{dataset.pk}/curate/rules/", {"min_size_px": "150", "confirm_large": "1"})
    assert Face.objects.filter(is_excluded=True).count() == len(expected)


def test_min_per_class_preview_and_guard(alice_client, dataset):
    dataset.classes = ["female", "male", "other"]
    dataset.save()
    make_faces(dataset, 20, labels=["female", "male", "male", "male", "other"])  # 4 female, 12 male, 4 other
    preview = alice_client.get(f"/labeling/{dataset.pk}/curate/min-per-class/preview/", {"minimum": "5"})
    assert preview.context["preview"].count == 8
    assert "I understand this excludes 8 faces (40.0 %)" in preview.content.decode()
    refused = alice_client.post(f"/labeling/{dataset.pk}/curate/min-per-class/", {"minimum": "5"}, follow=True)
    assert "confirm again to go ahead" in refused.content.decode()
    assert not Face.objects.filter(is_excluded=True).exists()
    alice_client.post(f"/labeling/{dataset.pk}/curate/min-per-class/", {"minimum": "5", "confirm_large": "on"})
    assert set(Face.objects.filter(is_excluded=True).values_list("label", flat=True)) == {"female", "other"}


@pytest.mark.parametrize(
    ("url", "params", "message"),
    [
        ("rules/preview/", {"min_size_px": "tiny"}, "must be a number"),
        ("rules/preview/", {}, "Give at least one threshold"),
        ("min-per-class/preview/", {"minimum": "0"}, "at least 1"),
    ],
)
def test_bad_previews_say_why(alice_client, dataset, faces, url, params, message):
    response = alice_client.get(f"/labeling/{dataset.pk}/curate/{url}", params, follow=True)
    assert message in response.content.decode()


def test_a_rule_matching_nothing_says_so(alice_client, dataset, faces):
    body = alice_client.get(f"/labeling/{dataset.pk}/curate/rules/preview/", {"min_size_px": "1"}).content.decode()
    assert "No included face fails this rule: nothing would change." in body and "confirm-action" not in body


def test_overview_forms_go_to_the_preview(alice_client, dataset, faces):
    body = alice_client.get(f"/labeling/{dataset.pk}/curate/").content.decode()
    assert f'action="/labeling/{dataset.pk}/curate/rules/preview/" id="rule-form"' in body
    assert f'action="/labeling/{dataset.pk}/curate/min-per-class/preview/"' in body


def test_previews_are_for_curators(bob_client, charlie_client, dataset, faces):
    for url in ("rules/preview/?min_size_px=60", "min-per-class/preview/?minimum=3"):
        assert bob_client.get(f"/labeling/{dataset.pk}/curate/{url}").status_code == 403
        assert charlie_client.get(f"/labeling/{dataset.pk}/curate/{url}").status_code == 404
    assert bob_client.post(f"/labeling/{dataset.pk}/curate/rules/", {"min_size_px": "60"}).status_code == 403
    assert not BulkAction.objects.exists()


# --- The API -------------------------------------------------------------------------------------


def test_rules_api_preview_and_needs_confirmation(alice_api, dataset, faces):
    url = f"/api/v1/datasets/{dataset.pk}/rules/"
    expected = small(faces, 150)
    preview = alice_api.post(url, {"min_size_px": 150, "preview": True}, format="json").json()
    assert preview["count"] == len(expected) and preview["total"] == 40 and preview["needs_confirmation"]
    assert len(preview["sample"]) == min(24, len(expected))
    first = preview["sample"][0]
    assert first["id"] in expected and first["crop_url"].startswith("/media/")
    assert first["url"] == f"/datasets/{dataset.pk}/faces/{first['id']}/"
    assert not BulkAction.objects.exists()

    refused = alice_api.post(url, {"min_size_px": 150}, format="json")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "needs_confirmation" and "confirm again to go ahead" in error["message"]
    assert refused.json()["confirmation"]["count"] == len(expected)
    assert not BulkAction.objects.exists()

    ok = alice_api.post(url, {"min_size_px": 150, "confirm_large": True}, format="json")
    assert ok.status_code == 200 and ok.json()["face_count"] == len(expected)


def test_rules_api_small_rule_needs_no_confirmation(alice_api, dataset, faces):
    response = alice_api.post(f"/api/v1/datasets/{dataset.pk}/rules/", {"min_size_px": 60}, format="json")
    assert response.status_code == 200 and response.json()["face_count"] == len(small(faces, 60))


def test_rules_api_for_curators_only(bob_api, dataset, faces):
    response = bob_api.post(f"/api/v1/datasets/{dataset.pk}/rules/", {"min_size_px": 60, "preview": True})
    assert response.status_code == 403


def test_bulk_change_by_filter_preview_and_guard(bob_api, dataset, faces):
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    body = {"filter": "label=male", "expected_count": 20, "changes": {"label": "female"}}
    preview = bob_api.post(url, {**body, "preview": True}, format="json").json()
    assert preview["count"] == 20 and preview["needs_confirmation"] and preview["share"] == 0.5
    assert preview["message"] == "This would change 20 faces, 50.0 % of the dataset."
    assert len(preview["sample"]) == 20 and not BulkAction.objects.exists()

    refused = bob_api.post(url, body, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "needs_confirmation"
    assert (
        refused.json()["error"]["message"] == "This changes 20 faces, 50.0 % of the dataset; confirm again to go ahead."
    )
    assert Face.objects.filter(label="male").count() == 20

    done = bob_api.post(url, {**body, "confirm_large": True}, format="json")
    assert done.status_code == 200 and done.json()["face_count"] == 20


def test_bulk_change_counts_only_faces_that_would_change(bob_api, dataset, faces):
    # Setting "female" on every face changes only the 20 male ones: that is the share checked.
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    preview = bob_api.post(url, {"filter": "", "changes": {"label": "female"}, "preview": True}, format="json").json()
    assert preview["count"] == 20
    # A small bulk change by filter goes through at once.
    one = bob_api.post(url, {"filter": "label=male&max_size=50", "changes": {"is_unsure": True}}, format="json")
    assert one.status_code == 200 and one.json()["face_count"] == sum(
        1 for f in faces if f.label == "male" and f.size_px <= 50
    )


def test_preview_needs_a_filter(bob_api, dataset, faces):
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    response = bob_api.post(url, {"faces": [faces[0].pk], "changes": {"label": "male"}, "preview": True}, format="json")
    assert response.status_code == 400 and "A preview needs `filter`" in response.json()["error"]["message"]


def test_a_page_of_ids_is_not_guarded(bob_api, dataset, faces):
    # The grid's own selection (at most a page) is what the person sees: no second confirmation.
    ids = [f.pk for f in faces[:30]]
    url = f"/api/v1/datasets/{dataset.pk}/label-changes/"
    response = bob_api.post(url, {"faces": ids, "changes": {"is_unsure": True}}, format="json")
    assert response.status_code == 200 and response.json()["face_count"] == 30


# --- Revert preview ------------------------------------------------------------------------------


def test_revert_preview_lists_old_and_new_values_in_words_and_the_conflicts(alice, bob, alice_client, dataset, faces):
    ids = [f.pk for f in faces[:4]]  # female, male, female, male
    action = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"label": "female"})
    excl = services.faces_update(user=alice, dataset=dataset, faces=ids[:2], changes={"is_excluded": True})
    services.faces_update(user=bob, dataset=dataset, faces=[ids[3]], changes={"label": "male"})
    body = alice_client.get(f"/labeling/{dataset.pk}/history/{action.pk}/revert/").content.decode()
    # Faces 1 and 3 were male and will be again; face 3 was changed by bob since: a conflict.
    assert f'<tr data-face="{ids[1]}">' in body and "label: female → male" in body
    assert "Conflict: 1 face changed again" in body
    assert "label: this action set female, now male, before it male" in body
    assert "Revert the 1 face without conflicts" in body
    assert Face.objects.get(pk=ids[1]).label == "female"  # nothing changed yet
    body = alice_client.get(f"/labeling/{dataset.pk}/history/{excl.pk}/revert/").content.decode()
    assert "excluded: yes → no" in body and "Revert 2 faces" in body


def test_revert_for_charlie_is_404_and_bob_may_not_revert_alices(alice, bob_client, charlie_client, dataset, faces):
    action = services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"label": "male"})
    assert charlie_client.get(f"/labeling/{dataset.pk}/history/{action.pk}/revert/").status_code == 404
    assert bob_client.get(f"/labeling/{dataset.pk}/history/{action.pk}/revert/").status_code == 403


def test_revert_preview_through_the_api(alice, bob, alice_api, bob_api, dataset, faces):
    ids = [f.pk for f in faces[:4]]
    action = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"split": "val"})
    services.faces_update(user=bob, dataset=dataset, faces=[ids[0]], changes={"split": "test"})
    url = f"/api/v1/datasets/{dataset.pk}/actions/{action.pk}/revert/"
    body = alice_api.get(url).json()
    assert body["restorable"] == 3 and not body["already_reverted"]
    assert body["changes"][0] == {"face": ids[1], "changes": ["split: val → none"]}
    assert body["conflicts"] == [{"face": ids[0], "changes": ["split: this action set val, now test, before it none"]}]
    assert Face.objects.filter(split="val").count() == 3  # nothing changed
    assert bob_api.get(url).status_code == 403
