"""Pre-labels: a model version's predictions on unlabelled faces shown as suggestions, never as
labels. The suggestions queue (contents, order, keys, undo), the curator's bulk accept with its
preview and confirm, the grid and detail panel, and who may do what. Versions and predictions are
rows made here, as a `pretrained` version would leave them (no training)."""

import html
import json

import pytest

from curator.models import Face
from labeling import services
from labeling.models import BulkAction, LabelEvent
from review import selectors as queues
from review.models import ReviewDecision
from tests.labeling.factories import make_faces, version_with_predictions
from training.models import ModelVersion, Prediction


@pytest.fixture
def faces(dataset):
    """12 faces: the even ones labelled (female/male), the odd ones unlabelled."""
    return make_faces(dataset, 12, labels=["female", "", "male", ""])


@pytest.fixture
def version(dataset, faces):
    return version_with_predictions(dataset, faces)


def unlabelled(faces):
    return [f for f in faces if not f.label]


def queue_ids(version) -> list[int]:
    return [p.face_id for p in queues.suggestions_queue(model_version=version)]


def decide(client, dataset, version, face, decision, **extra):
    face.refresh_from_db()
    body = {
        "model_version": version.pk,
        "queue": "suggestions",
        "face": face.pk,
        "version": face.version,
        "decision": decision,
        **extra,
    }
    return client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )


def undo(client, dataset, version):
    body = {"model_version": version.pk, "queue": "suggestions"}
    return client.post(
        f"/api/v1/datasets/{dataset.pk}/review/undo/", data=json.dumps(body), content_type="application/json"
    )


# --- The queue ----------------------------------------------------------------------------------------


def test_the_queue_holds_the_unlabelled_included_faces_most_confident_first(version, dataset, faces, alice):
    open_faces = unlabelled(faces)
    expected = [p.face_id for p in Prediction.objects.filter(face__in=open_faces).order_by("-confidence")]
    assert queue_ids(version) == expected and len(expected) == 6
    # Excluded and unsure faces leave it; labelled faces are never in it.
    services.faces_update(user=alice, dataset=dataset, faces=[open_faces[0].pk], changes={"is_excluded": True})
    services.faces_update(user=alice, dataset=dataset, faces=[open_faces[1].pk], changes={"is_unsure": True})
    assert queue_ids(version) == expected[2:]
    assert not {f.pk for f in faces if f.label} & set(queue_ids(version))


def test_the_page_shows_each_suggestion_as_a_suggestion_not_a_label(bob_client, version, dataset, faces):
    response = bob_client.get(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-ranking="suggestions"' in text and "most confident first" in text
    first = Prediction.objects.get(face_id=queue_ids(version)[0], model_version=version)
    assert f'data-id="{first.face_id}"' in text and f'data-suggested="{first.predicted_label}"' in text
    assert f"suggested: {first.predicted_label} {first.confidence:.2f}" in text
    assert 'class="badge none">unlabelled<' in text
    # The key hint comes from the key registry (labeling/keys.py): `a` accepts on every page.
    assert "<kbd>a</kbd> accept the model&#x27;s suggestion as the label" in text
    assert "<kbd>m</kbd> label male" in text
    # Showing suggestions labels nothing.
    assert all(f.label == "" for f in Face.objects.filter(pk__in=[f.pk for f in unlabelled(faces)]))
    assert not LabelEvent.objects.exists()


def test_a_accepts_the_suggestion_as_a_human_label_and_z_takes_it_back(bob_client, version, dataset, faces, bob):
    face = Face.objects.get(pk=queue_ids(version)[0])
    prediction = Prediction.objects.get(face=face, model_version=version)
    response = decide(bob_client, dataset, version, face, "a")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision"] == "accepted" and body["face"]["label"] == prediction.predicted_label
    face.refresh_from_db()
    assert face.label == prediction.predicted_label and face.label_origin == Face.LabelOrigin.HUMAN
    event = LabelEvent.objects.get(face=face, field="label")
    assert (event.old_value, event.new_value, event.user) == ("", prediction.predicted_label, bob)
    assert event.action.kind == BulkAction.Kind.REVIEW
    assert event.action.params["queue"] == "suggestions" and event.action.params["model_version"] == version.pk
    assert event.action.params["suggestion"] == (
        f"accepted v1's suggestion {prediction.predicted_label} ({prediction.confidence:.2f})"
    )
    decision = ReviewDecision.objects.get(face=face, model_version=version)
    assert (decision.decision, decision.label_before, decision.label_after, decision.user) == (
        "accepted",
        "",
        prediction.predicted_label,
        bob,
    )
    assert face.pk not in queue_ids(version)
    assert body["progress"]["accepted"] == 1 and body["progress"]["remaining"] == 5
    # The face's history in the detail panel says where the label came from.
    detail = html.unescape(bob_client.get(f"/labeling/{dataset.pk}/faces/{face.pk}/").content.decode())
    assert f"accepted v1's suggestion {prediction.predicted_label}" in detail

    response = undo(bob_client, dataset, version)
    assert response.status_code == 200, response.content
    face.refresh_from_db()
    assert face.label == "" and face.label_origin == Face.LabelOrigin.NONE
    assert not ReviewDecision.objects.filter(face=face).exists()
    assert LabelEvent.objects.filter(face=face, field="label", action__kind=BulkAction.Kind.UNDO).exists()
    assert queue_ids(version)[0] == face.pk
    assert "Nothing to undo" in undo(bob_client, dataset, version).json()["error"]["message"]


def test_a_class_key_gives_the_face_that_label_whatever_the_suggestion(alice_client, version, dataset, alice):
    face_id, other_id = queue_ids(version)[:2]
    first = Prediction.objects.get(face_id=face_id, model_version=version)
    against = "female" if first.predicted_label == "male" else "male"
    response = decide(alice_client, dataset, version, Face.objects.get(pk=face_id), "label", label=against)
    assert response.status_code == 200, response.content
    assert response.json()["decision"] == "confirmed"
    face = Face.objects.get(pk=face_id)
    assert face.label == against and face.label_origin == Face.LabelOrigin.HUMAN
    assert Prediction.objects.get(pk=first.pk).disagrees is True
    params = LabelEvent.objects.get(face=face, field="label").action.params
    assert params["suggestion"].startswith(f"labelled {against} against v1's suggestion {first.predicted_label}")
    # The same key as the suggestion is an accept.
    second = Prediction.objects.get(face_id=other_id, model_version=version)
    body = decide(alice_client, dataset, version, Face.objects.get(pk=other_id), "label", label=second.predicted_label)
    assert body.json()["decision"] == "accepted"
    assert set(queue_ids(version)).isdisjoint({face_id, other_id})
    # A person who labelled against the model is not asked again by its disputes queue.
    assert face_id not in {p.face_id for p in queues.disagreement_queue(model_version=version)}


def test_x_excludes_and_u_marks_unsure_without_labelling(alice_client, version, dataset):
    first, second = (Face.objects.get(pk=i) for i in queue_ids(version)[:2])
    assert decide(alice_client, dataset, version, first, "x").status_code == 200
    assert decide(alice_client, dataset, version, second, "u").status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_excluded and first.label == "" and second.is_unsure and second.label == ""
    assert sorted(ReviewDecision.objects.values_list("decision", flat=True)) == ["excluded", "unsure"]
    assert set(queue_ids(version)).isdisjoint({first.pk, second.pk})


def test_labelled_faces_and_bad_keys_are_refused_and_change_nothing(alice_client, version, dataset, faces):
    labelled = next(f for f in faces if f.label)
    response = decide(alice_client, dataset, version, labelled, "a")
    assert response.status_code == 400 and "labelled female already" in response.json()["error"]["message"]
    face = Face.objects.get(pk=queue_ids(version)[0])
    for decision, extra, needle in (
        ("c", {}, "no label to confirm"),
        ("label", {"label": "cat"}, "Unknown label"),
        ("a", {"queue": "elsewhere"}, "Unknown queue"),
    ):
        response = decide(alice_client, dataset, version, face, decision, **extra)
        assert response.status_code == 400 and needle in response.json()["error"]["message"]
    # The disputes queue has nothing to say about an unlabelled face.
    body = {"model_version": version.pk, "face": face.pk, "decision": "a"}
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400 and "suggestions queue" in response.json()["error"]["message"]
    assert not ReviewDecision.objects.exists() and not LabelEvent.objects.exists()


def test_the_two_queues_of_a_version_keep_their_own_progress_and_undo(alice_client, version, dataset, faces, alice):
    disputed = next(f for f in faces if f.label and Prediction.objects.get(face=f).disagrees)
    body = {"model_version": version.pk, "face": disputed.pk, "decision": "c"}
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    decide(alice_client, dataset, version, Face.objects.get(pk=queue_ids(version)[0]), "a")
    suggestions = queues.review_progress(model_version=version, queue=queues.SUGGESTIONS)
    disputes = queues.review_progress(model_version=version)
    assert (suggestions["reviewed"], suggestions["accepted"], suggestions["confirmed"]) == (1, 1, 0)
    assert (disputes["reviewed"], disputes["accepted"], disputes["confirmed"]) == (1, 0, 1)
    # z in the disputes queue takes back the dispute decision, not the later suggestion one.
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/undo/",
        data=json.dumps({"model_version": version.pk}),
        content_type="application/json",
    )
    assert response.json()["face"]["id"] == disputed.pk
    assert ReviewDecision.objects.get().label_before == ""


def test_suggestions_of_classes_the_dataset_does_not_have_are_left_out(alice_client, dataset, faces):
    version = version_with_predictions(
        dataset,
        unlabelled(faces),
        classes=["female", "male", "other"],
        predict=lambda i, f: ("other" if i == 0 else "male", 0.9 - 0.1 * i),
    )
    assert queue_ids(version) == [f.pk for f in unlabelled(faces)[1:]]
    text = alice_client.get(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/").content.decode()
    assert 'id="foreign-classes"' in text and "(other)" in text


# --- Bulk accept ----------------------------------------------------------------------------------------


def test_a_curator_previews_then_confirms_a_bulk_accept_as_one_revertable_action(alice_client, version, dataset, alice):
    above = [p for p in queues.suggestions_queue(model_version=version) if p.confidence >= 0.8]
    below = [p for p in queues.suggestions_queue(model_version=version) if p.confidence < 0.8]
    assert above and below
    url = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/accept"
    response = alice_client.get(url, {"min_confidence": "0.8"})
    assert response.status_code == 200
    assert response.context["preview"]["count"] == len(above)
    text = response.content.decode()
    assert f'<b id="preview-count">{len(above)}</b>' in text
    assert f'name="expected_count" value="{len(above)}"' in text
    assert f"Accept {len(above)} suggestions as labels" in text
    assert not LabelEvent.objects.exists()  # a preview changes nothing

    response = alice_client.post(url, {"min_confidence": "0.8", "expected_count": str(len(above))})
    assert response.status_code == 302 and response.url.endswith(f"/versions/{version.pk}/suggestions/")
    for p in above:
        face = Face.objects.get(pk=p.face_id)
        assert face.label == p.predicted_label and face.label_origin == Face.LabelOrigin.HUMAN
    assert all(Face.objects.get(pk=p.face_id).label == "" for p in below)
    action = BulkAction.objects.get(kind=BulkAction.Kind.REVIEW)
    assert action.face_count == len(above) and action.user == alice
    assert action.params["bulk"] is True and action.params["min_confidence"] == 0.8
    assert LabelEvent.objects.filter(action=action, field="label").count() == len(above)
    assert not ReviewDecision.objects.exists()
    assert queue_ids(version) == [p.face_id for p in below]
    followed = alice_client.get(response.url).content.decode()
    assert f"Accepted {len(above)} suggestions of v1 as labels" in followed

    # One revert takes them all back, and they are suggestions again.
    services.bulk_action_revert(user=alice, action=action)
    assert all(Face.objects.get(pk=p.face_id).label == "" for p in above)
    assert queue_ids(version) == [p.face_id for p in above + below]


def test_a_bulk_accept_whose_count_changed_since_the_preview_changes_nothing(alice_client, version, dataset, alice):
    top = queues.suggestions_queue(model_version=version).first()
    url = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/accept"
    count = alice_client.get(url, {"min_confidence": "0.5"}).context["preview"]["count"]
    services.faces_update(user=alice, dataset=dataset, faces=[top.face_id], changes={"label": "female"})
    response = alice_client.post(url, {"min_confidence": "0.5", "expected_count": str(count)}, follow=True)
    assert (
        "Nothing accepted" in response.content.decode()
        and f"not the {count} you confirmed" in response.content.decode()
    )
    assert not BulkAction.objects.filter(kind=BulkAction.Kind.REVIEW).exists()


@pytest.mark.parametrize("threshold", ["abc", "1.5", "-0.1", "nan"])
def test_a_bad_threshold_is_refused(alice_client, version, dataset, threshold):
    url = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/accept"
    response = alice_client.get(url, {"min_confidence": threshold}, follow=True)
    assert "confidence threshold must be" in response.content.decode()
    response = alice_client.post(url, {"min_confidence": threshold, "expected_count": "1"}, follow=True)
    assert "Nothing accepted" in response.content.decode()
    assert not LabelEvent.objects.exists()


def test_annotators_accept_one_by_one_but_only_curators_bulk_accept(bob_client, version, dataset):
    url = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/accept"
    assert bob_client.get(url, {"min_confidence": "0.5"}).status_code == 403
    assert bob_client.post(url, {"min_confidence": "0.5", "expected_count": "6"}).status_code == 403
    assert not LabelEvent.objects.exists()
    page = bob_client.get(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/").content.decode()
    assert 'id="bulk-accept"' not in page
    assert decide(bob_client, dataset, version, Face.objects.get(pk=queue_ids(version)[0]), "a").status_code == 200


def test_charlie_cannot_see_or_accept_alices_suggestions(charlie_client, version, dataset):
    face = Face.objects.get(pk=queue_ids(version)[0])
    base = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/"
    assert charlie_client.get(base).status_code == 404
    assert charlie_client.get(base + "accept", {"min_confidence": "0.5"}).status_code == 404
    assert charlie_client.post(base + "accept", {"min_confidence": "0.5", "expected_count": "6"}).status_code == 404
    assert decide(charlie_client, dataset, version, face, "a").status_code == 404
    assert undo(charlie_client, dataset, version).status_code == 404
    face.refresh_from_db()
    assert face.label == "" and not ReviewDecision.objects.exists()


def test_a_version_of_another_dataset_has_no_suggestions_here(alice_client, version, alice):
    from curator.services.datasets import dataset_create

    other = dataset_create(user=alice, name="other", classes=["female", "male"])
    assert alice_client.get(f"/review/{other.pk}/versions/{version.pk}/suggestions/").status_code == 404


# --- The index, the grid and the detail panel ----------------------------------------------------------


def test_the_index_points_at_a_pretrained_versions_suggestions_first(alice_client, version, dataset, faces):
    trained = version_with_predictions(dataset, faces, number=2, architecture="embedding")
    text = alice_client.get(f"/review/{dataset.pk}/").content.decode()
    assert f'id="pretrained-{version.pk}"' in text and f'id="pretrained-{trained.pk}"' not in text
    assert "Pre-labels from v1 (pretrained)" in text and "6 unlabelled faces have a suggested label" in text
    assert text.index(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/") < text.index("Faces a model version")
    # Every version's row links its own suggestions queue.
    assert f"/review/{dataset.pk}/versions/{trained.pk}/suggestions/" in text


def test_the_grid_shows_the_chosen_versions_suggestion_on_unlabelled_faces_only(bob_client, version, dataset, faces):
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"model": version.pk})
    tiles = {t["id"]: t for t in response.context["faces"]}
    for face in faces:
        prediction = Prediction.objects.get(face=face, model_version=version)
        if face.label:
            assert tiles[face.pk]["suggestion"] == ""
        else:
            assert (
                tiles[face.pk]["suggestion"] == f"suggested: {prediction.predicted_label} {prediction.confidence:.2f}"
            )
    text = response.content.decode()
    assert '<span class="suggestion c' in text and f"?model={version.pk}" in text
    # Without ?model= the grid uses the active version; with none active there is no suggestion.
    assert all(not t["suggestion"] for t in bob_client.get(f"/labeling/{dataset.pk}/").context["faces"])
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    assert any(t["suggestion"] for t in bob_client.get(f"/labeling/{dataset.pk}/").context["faces"])


def test_the_detail_panel_shows_the_suggestion_apart_from_the_label(bob_client, version, dataset, faces, alice):
    face = unlabelled(faces)[0]
    prediction = Prediction.objects.get(face=face, model_version=version)
    url = f"/labeling/{dataset.pk}/faces/{face.pk}/"
    text = bob_client.get(url, {"model": version.pk}).content.decode()
    assert f"suggested: {prediction.predicted_label} {prediction.confidence:.2f}" in text
    assert "by v1, not a label" in text and 'class="badge none">unlabelled<' in text
    # No version chosen and none active: the suggestion a predict-page import left is shown.
    assert 'id="suggested"' not in bob_client.get(url).content.decode()
    Face.objects.filter(pk=face.pk).update(suggested_label="male")
    assert "suggested: male</span>" in bob_client.get(url).content.decode()
    # Once labelled, the face shows its label and no suggestion.
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"label": "female"})
    assert 'id="suggested"' not in bob_client.get(url, {"model": version.pk}).content.decode()
