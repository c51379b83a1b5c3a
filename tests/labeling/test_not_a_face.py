"""“Not a face”: a false detection is excluded with that reason as an action of its own kind
(history, undo), the mark survives re-alignment of its photo, the count shows on the job and
dataset pages, and only people on the dataset may mark."""

from rest_framework.test import APIClient

from curator.models import Face
from labeling import services
from labeling.models import BulkAction, LabelEvent
from tests.curator.test_alignment import LFW, run_job, store_image
from tests.labeling.factories import make_faces


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def mark(client, dataset, faces, **extra):
    return client.post(f"/api/v1/datasets/{dataset.pk}/not-a-face/", {"faces": faces, **extra}, format="json")


def test_bob_marks_a_face_and_it_is_excluded_with_history_and_undo(bob, dataset):
    faces = make_faces(dataset, 3, labels=["male"])
    response = mark(api(bob), dataset, [faces[1].pk], versions={str(faces[1].pk): faces[1].version})
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "not_a_face"
    assert body["message"] == "Not a face: 1 face excluded as false detection."
    assert body["faces"][0]["is_excluded"] is True
    face = Face.objects.get(pk=faces[1].pk)
    assert (face.is_excluded, face.exclusion_reason) == (True, Face.NOT_A_FACE)
    assert face.label == "male"  # the label stays: "not a face" says nothing about it
    action = BulkAction.objects.get(kind=BulkAction.Kind.NOT_A_FACE)
    assert (action.user, action.face_count, action.params["reason"]) == (bob, 1, "not a face")
    event = LabelEvent.objects.get(action=action)
    assert (event.face_id, event.field, event.old_value, event.new_value) == (
        faces[1].pk,
        "is_excluded",
        "false",
        "true",
    )
    assert not Face.objects.filter(pk__in=[faces[0].pk, faces[2].pk], is_excluded=True).exists()

    # The history page names it; `z` takes it back.
    page = api(bob).get(f"/api/v1/datasets/{dataset.pk}/actions/").json()
    assert page["results"][0]["kind"] == "not_a_face"
    assert api(bob).post(f"/api/v1/datasets/{dataset.pk}/undo/").status_code == 200
    face.refresh_from_db()
    assert (face.is_excluded, face.exclusion_reason) == (False, "")


def test_an_excluded_face_gets_the_reason_and_a_marked_one_is_left_alone(alice, dataset):
    faces = make_faces(dataset, 2)
    services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"is_excluded": True})
    action = services.faces_mark_not_face(user=alice, dataset=dataset, faces=[faces[0].pk])
    assert action.face_count == 1 and action.params["reason_changed"] == [faces[0].pk]
    assert Face.objects.get(pk=faces[0].pk).exclusion_reason == Face.NOT_A_FACE
    again = mark(api(alice), dataset, [faces[0].pk])
    assert again.status_code == 200
    assert again.json()["message"] == "Already marked as not a face: nothing changed."


def test_errors_are_clear(bob, dataset, alice):
    faces = make_faces(dataset, 2)
    empty = mark(api(bob), dataset, [])
    assert empty.status_code == 400
    assert empty.json()["error"]["message"] == "No face given: focus or select the false detection first."
    services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"label": "female"})
    stale = mark(api(bob), dataset, [faces[0].pk], versions={str(faces[0].pk): 1})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_face"
    assert not Face.objects.get(pk=faces[0].pk).is_excluded
    foreign = mark(api(bob), dataset, [faces[1].pk + 1000])
    assert foreign.status_code == 400


def test_permissions(alice, bob, charlie, dataset):
    faces = make_faces(dataset, 1)
    assert mark(api(), dataset, [faces[0].pk]).status_code in (401, 403)
    assert mark(api(charlie), dataset, [faces[0].pk]).status_code == 404  # not on the dataset
    assert not Face.objects.get(pk=faces[0].pk).is_excluded
    assert mark(api(bob), dataset, [faces[0].pk]).status_code == 200  # annotators may, like `x`


def test_the_mark_survives_realignment_and_shows_on_the_reports(
    alice, alice_client, dataset, django_capture_on_commit_callbacks
):
    image = store_image(dataset, LFW[0], label="female")
    job = run_job(dataset, [image], django_capture_on_commit_callbacks)
    face = image.faces.get()
    services.faces_mark_not_face(user=alice, dataset=dataset, faces=[face.pk])

    dataset.crop_size = 96  # a re-run that changes every crop
    dataset.save()
    again_job = run_job(dataset, [image], django_capture_on_commit_callbacks)

    again = image.faces.get()
    assert again.pk == face.pk  # the same box found again (IoU): the same face row, its history kept
    assert (again.is_excluded, again.exclusion_reason) == (True, Face.NOT_A_FACE)
    assert again.label_events.filter(action__kind=BulkAction.Kind.NOT_A_FACE).count() == 1

    detail = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert '<b id="not-a-face-count">1</b>not a face' in detail
    report = alice_client.get(f"/datasets/{dataset.pk}/jobs/{again_job.pk}/").content.decode()
    assert '<b id="job-not-a-face">1</b>not a face' in report
    assert job.pk != again_job.pk
