"""The curation, duplicates and history pages: what they show, and the messages for bad input."""

import pytest

from curator.models import Face
from labeling import services
from labeling.models import BulkAction
from tests.embeddings.factories import descriptors_store, duplicates_compute_now, far_apart_vectors, near
from tests.labeling.factories import make_faces


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 24, labels=["female", "male", "male", ""])


def test_overview_counts_per_class_and_split_and_draws_histograms(alice, alice_client, dataset, faces):
    services.splits_assign(user=alice, dataset=dataset, seed=0)
    response = alice_client.get(f"/labeling/{dataset.pk}/curate/")
    ov = response.context["ov"]
    rows = {label: (counts, total) for label, counts, total in ov["rows"]}
    assert rows["female"][1] == 6 and rows["male"][1] == 12 and rows["unlabelled"][1] == 6
    assert sum(rows["male"][0][:3]) == 12 and rows["unlabelled"][0] == [0, 0, 0, 6]
    body = response.content.decode()
    assert body.count("<svg") >= 4 and "Sharpness" in body
    assert "data:image" not in body


def test_small_classes_are_flagged(alice_client, dataset):
    make_faces(dataset, 3, labels=["female"])
    assert (
        "Below the minimum of 10 faces per class: female"
        in alice_client.get(f"/labeling/{dataset.pk}/curate/").content.decode()
    )


def test_rule_form_applies_and_reports(alice_client, dataset, faces):
    response = alice_client.post(
        f"/labeling/{dataset.pk}/curate/rules/", {"min_size_px": "100", "confirm_large": "1"}, follow=True
    )
    n = Face.objects.filter(is_excluded=True).count()
    assert n == sum(1 for f in faces if f.size_px < 100) > 0
    assert f"Rule applied: {n} face(s) excluded (rule: size below 100.0 px)" in response.content.decode()


@pytest.mark.parametrize(
    ("url", "data", "message"),
    [
        ("rules", {"min_size_px": "tiny"}, "must be a number"),
        ("rules", {}, "Give at least one threshold"),
        ("min-per-class", {"minimum": "-3"}, "at least 1"),
        ("splits", {"seed": "s", "train": "70", "val": "15", "test": "15"}, "The seed must be a whole number"),
        ("splits", {"train": "0", "val": "0", "test": "0"}, "positive sum"),
        ("keys", {"key_female": "m", "key_male": "m"}, "Two classes share a key"),
        ("keys", {"key_female": "u", "key_male": "m"}, "is reserved"),
        ("keys", {"key_female": "f", "key_male": ""}, "Give a key for every class"),
    ],
)
def test_bad_curation_input_gets_a_message_and_changes_nothing(alice_client, dataset, faces, url, data, message):
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/{url}/", data, follow=True)
    assert message in response.content.decode()
    assert not BulkAction.objects.exists()
    dataset.refresh_from_db()
    assert dataset.class_keys == {}


def test_export_with_no_labelled_faces_says_so(alice_client, dataset):
    make_faces(dataset, 2)
    response = alice_client.post(f"/labeling/{dataset.pk}/curate/exports/", follow=True)
    assert "no included, labelled faces to export" in response.content.decode()


def test_class_keys_are_configurable_and_shown_on_the_grid(alice_client, dataset, faces):
    alice_client.post(f"/labeling/{dataset.pk}/curate/keys/", {"key_female": "1", "key_male": "2"})
    dataset.refresh_from_db()
    assert dataset.class_keys == {"female": "1", "male": "2"}
    body = alice_client.get(f"/labeling/{dataset.pk}/").content.decode()
    # In the page's key map (the `?` overlay), which the grid's script binds.
    assert '{"key": "1", "text": "label female"}' in body and '{"key": "2", "text": "label male"}' in body


def test_duplicates_page_shows_groups_and_keep_one(alice_client, dataset):
    hashes = [(i * 0x9E3779B97F4A7C15) & 0x7FFFFFFFFFFFFFFF for i in range(1, 7)]
    hashes[1] = hashes[0] ^ 0b1
    faces = make_faces(dataset, 6, labels=["female", "male", "female"])
    vectors = far_apart_vectors(6)
    vectors[1] = near(vectors[0], 0.4)  # the descriptors agree too: one person
    descriptors_store(faces, vectors=vectors, phashes=hashes)
    duplicates_compute_now(dataset)
    response = alice_client.get(f"/labeling/{dataset.pk}/duplicates/")
    assert response.context["group_count"] == 1
    assert "Conflicting labels: female / male" in response.content.decode()
    ids = f"{faces[0].pk},{faces[1].pk}"
    response = alice_client.post(
        f"/labeling/{dataset.pk}/duplicates/keep/", {"faces": ids, "keep": faces[0].pk, "confirm": "1"}, follow=True
    )
    assert f"Kept face {faces[0].pk}; excluded 1 duplicate(s)." in response.content.decode()
    assert Face.objects.get(pk=faces[1].pk).is_excluded


def test_duplicates_page_bad_input(alice_client, dataset, faces):
    response = alice_client.post(f"/labeling/{dataset.pk}/duplicates/keep/", {"faces": "a,b", "keep": "x"}, follow=True)
    assert "whole numbers" in response.content.decode()
    response = alice_client.post(
        f"/labeling/{dataset.pk}/duplicates/keep/",
        {"faces": f"{faces[0].pk},{faces[1].pk}", "keep": faces[0].pk, "confirm": "1"},
        follow=True,
    )
    assert f"is not a near-duplicate of face {faces[0].pk}" in response.content.decode()
    assert not BulkAction.objects.exists()


def test_history_lists_actions_and_bad_pages(bob, bob_client, dataset, faces):
    services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes={"label": "male"})
    body = bob_client.get(f"/labeling/{dataset.pk}/history/").content.decode()
    assert "Set label" in body and "Revert…" in body
    response = bob_client.get(f"/labeling/{dataset.pk}/history/", {"page": "99"})
    assert response.status_code == 404 and "There is no page “99” of the history." in response.content.decode()


def test_revert_preview_lists_conflicts(alice, bob, alice_client, dataset, faces):
    action = services.faces_update(
        user=alice, dataset=dataset, faces=[f.pk for f in faces[:4]], changes={"split": "val"}
    )
    services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes={"split": "test"})
    body = alice_client.get(f"/labeling/{dataset.pk}/history/{action.pk}/revert/").content.decode()
    assert "Conflict: 1 face changed again" in body and "Revert the 3 faces without conflicts" in body


def test_bulk_over_many_ids_and_a_foreign_one(alice, dataset):
    from curator.models import Dataset

    faces = make_faces(dataset, 150, labels=["female"])
    ids = [f.pk for f in faces]
    action = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"label": "male"})
    assert action.face_count == 150 and action.events.count() == 150
    other = Dataset.objects.create(name="other")
    foreign = make_faces(other, 1, start=500)[0]
    with pytest.raises(services.InvalidChange, match="1 of the 151 face ids"):
        services.faces_update(user=alice, dataset=dataset, faces=[*ids, foreign.pk], changes={"label": "female"})
    assert Face.objects.filter(dataset=dataset, label="male").count() == 150


def test_dataset_page_links_to_the_labeling_pages(bob_client, dataset, faces):
    body = bob_client.get(f"/datasets/{dataset.pk}/").content.decode()
    for url in ("", "curate/", "duplicates/", "history/"):
        assert f'href="/labeling/{dataset.pk}/{url}"' in body
