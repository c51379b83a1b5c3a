"""The misclassified queue of a model version trained in the test, the out-of-fold queue and the
active-learning queue: order, each key's decision and LabelEvents, faces leaving the queue, undo,
conflicts, progress, retraining, and who may do what."""

import json

import pytest

from curator.models import Face
from labeling import services
from labeling.models import BulkAction, LabelEvent
from review import selectors as queues
from review.models import ReviewDecision
from tests.training.predict_support import embedding_version, labelled_faces
from training.models import JobStatus, OutOfFoldRun, OutOfFoldScore, Prediction, TrainingJob


@pytest.fixture
def version(dataset, alice):
    faces = labelled_faces(dataset)
    version = embedding_version(dataset, alice)
    # Make sure the model disputes some labels whatever it learnt in two epochs: give four faces
    # the label the model does not predict.
    for face in faces[:4]:
        predicted = Prediction.objects.get(face=face, model_version=version).predicted_label
        other = "male" if predicted == "female" else "female"
        services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"label": other})
    return version


def decide(client, dataset, version, face, key, **extra):
    body = {"model_version": version.pk, "face": face.pk, "version": face.version, "decision": key, **extra}
    return client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )


def first_in_queue(version) -> Face:
    return queues.disagreement_queue(model_version=version).first().face


def test_the_queue_holds_exactly_the_disputed_faces_most_confident_first(version):
    queue = list(queues.disagreement_queue(model_version=version))
    disputed = [
        p
        for p in Prediction.objects.filter(model_version=version).select_related("face")
        if p.face.label and p.face.label != p.predicted_label and not p.face.is_excluded
    ]
    assert len(queue) == len(disputed) >= 4
    assert {p.face_id for p in queue} == {p.face_id for p in disputed}
    confidences = [p.confidence for p in queue]
    assert confidences == sorted(confidences, reverse=True)


def test_excluded_faces_are_not_in_the_queue(version, dataset, alice):
    face = first_in_queue(version)
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"is_excluded": True})
    assert face.pk not in {p.face_id for p in queues.disagreement_queue(model_version=version)}


def test_a_accepts_the_models_label_as_a_recorded_review_action(bob_client, version, dataset, bob):
    face = first_in_queue(version)
    model_label = Prediction.objects.get(face=face, model_version=version).predicted_label
    response = decide(bob_client, dataset, version, face, "a")
    assert response.status_code == 200, response.content
    assert response.json()["decision"] == "accepted"
    face.refresh_from_db()
    assert face.label == model_label and face.label_origin == Face.LabelOrigin.HUMAN
    event = LabelEvent.objects.get(face=face, field="label", action__kind=BulkAction.Kind.REVIEW)
    assert event.new_value == model_label and event.old_value != model_label and event.user == bob
    assert event.action.params["decision"] == "accepted" and event.action.params["model_version"] == version.pk
    decision = ReviewDecision.objects.get(face=face, model_version=version)
    assert decision.decision == "accepted" and decision.label_after == model_label and decision.user == bob
    assert face.pk not in {p.face_id for p in queues.disagreement_queue(model_version=version)}
    assert Prediction.objects.get(face=face, model_version=version).disagrees is False


def test_c_confirms_the_human_label_and_the_face_leaves_the_queue(alice_client, version, dataset, alice):
    face = first_in_queue(version)
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"is_unsure": True})
    face.refresh_from_db()
    label = face.label
    response = decide(alice_client, dataset, version, face, "c")
    assert response.status_code == 200, response.content
    face.refresh_from_db()
    assert face.label == label and face.is_unsure is False
    review_events = LabelEvent.objects.filter(face=face, action__kind=BulkAction.Kind.REVIEW)
    # The label stays; what changes is that it is no longer unsure.
    assert [(e.field, e.old_value, e.new_value) for e in review_events] == [("is_unsure", "true", "false")]
    decision = ReviewDecision.objects.get(face=face, model_version=version)
    assert decision.decision == "confirmed" and decision.label_before == decision.label_after == label
    assert face.pk not in {p.face_id for p in queues.disagreement_queue(model_version=version)}
    # Still a disagreement for the grid's filter (the model has not changed its mind), but
    # remembered as confirmed for this version.
    assert Prediction.objects.get(face=face, model_version=version).disagrees is True


def test_x_excludes_and_u_marks_unsure(alice_client, version, dataset):
    first = first_in_queue(version)
    assert decide(alice_client, dataset, version, first, "x").status_code == 200
    second = first_in_queue(version)
    assert decide(alice_client, dataset, version, second, "u").status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_excluded and second.is_unsure and not second.is_excluded
    assert LabelEvent.objects.get(face=first, action__kind="review").field == "is_excluded"
    assert LabelEvent.objects.get(face=second, action__kind="review").field == "is_unsure"
    assert set(ReviewDecision.objects.values_list("decision", flat=True)) == {"excluded", "unsure"}
    remaining = {p.face_id for p in queues.disagreement_queue(model_version=version)}
    assert first.pk not in remaining and second.pk not in remaining


def test_progress_counts_reviews_and_label_changes(alice_client, version, dataset):
    before = queues.review_progress(model_version=version)
    decide(alice_client, dataset, version, first_in_queue(version), "a")
    body = decide(alice_client, dataset, version, first_in_queue(version), "c").json()
    progress = body["progress"]
    assert progress["reviewed"] == 2 and progress["accepted"] == 1 and progress["confirmed"] == 1
    assert progress["labels_changed"] == 1
    assert progress["remaining"] == before["remaining"] - 2
    assert progress["total"] == before["total"]


def test_z_undoes_my_last_decision_and_puts_the_face_back(alice_client, version, dataset):
    face = first_in_queue(version)
    label = face.label
    decide(alice_client, dataset, version, face, "a")
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/undo/",
        data=json.dumps({"model_version": version.pk}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    face.refresh_from_db()
    assert face.label == label
    assert not ReviewDecision.objects.filter(face=face).exists()
    assert LabelEvent.objects.filter(face=face, action__kind=BulkAction.Kind.UNDO, field="label").exists()
    assert first_in_queue(version).pk == face.pk
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/undo/",
        data=json.dumps({"model_version": version.pk}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "Nothing to undo" in response.json()["error"]["message"]


def test_a_face_changed_since_the_page_was_shown_is_refused_with_its_current_state(alice_client, version, dataset, bob):
    face = first_in_queue(version)
    shown_version = face.version
    services.faces_update(user=bob, dataset=dataset, faces=[face.pk], changes={"is_unsure": True})
    face.version = shown_version
    response = decide(alice_client, dataset, version, face, "a")
    assert response.status_code == 409
    assert "since you loaded the page" in response.json()["error"]["message"]
    assert response.json()["current"][0]["is_unsure"] is True
    assert not ReviewDecision.objects.filter(face=face).exists()


def test_a_face_already_decided_or_not_in_the_queue_is_refused(alice_client, version, dataset):
    face = first_in_queue(version)
    decide(alice_client, dataset, version, face, "c")
    face.refresh_from_db()
    response = decide(alice_client, dataset, version, face, "a")
    assert response.status_code == 400
    assert "already reviewed" in response.json()["error"]["message"]
    assert ReviewDecision.objects.filter(face=face).count() == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"decision": "maybe"}, "Unknown decision"),
        ({"face": "abc"}, "whole number"),
        ({"model_version": None}, "Give either"),
    ],
)
def test_bad_requests_change_nothing(alice_client, version, dataset, body, needle):
    face = first_in_queue(version)
    payload = {"model_version": version.pk, "face": face.pk, "decision": "a", **body}
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(payload), content_type="application/json"
    )
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    assert not ReviewDecision.objects.exists()


def test_charlie_cannot_see_or_decide_in_alices_queue(charlie_client, version, dataset):
    face = first_in_queue(version)
    assert charlie_client.get(f"/review/{dataset.pk}/").status_code == 404
    assert charlie_client.get(f"/review/{dataset.pk}/versions/{version.pk}/").status_code == 404
    assert decide(charlie_client, dataset, version, face, "a").status_code == 404
    assert not ReviewDecision.objects.exists()


def test_a_version_of_another_dataset_is_404(alice_client, version, dataset, alice):
    from curator.services.datasets import dataset_create

    other = dataset_create(user=alice, name="other", classes=["female", "male"])
    assert alice_client.get(f"/review/{other.pk}/versions/{version.pk}/").status_code == 404


def test_the_queue_page_shows_the_ranking_the_faces_and_their_photos(bob_client, version, dataset):
    response = bob_client.get(f"/review/{dataset.pk}/versions/{version.pk}/")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'data-ranking="disagreement"' in text and "Ranking: model disagreement" in text
    first = first_in_queue(version)
    assert f'data-id="{first.pk}"' in text
    assert f"/media/{first.image.file}" in text and f"/media/{first.crop}" in text
    assert "Retrain with the same config" not in text  # bob is an annotator
    index = bob_client.get(f"/review/{dataset.pk}/").content.decode()
    assert "Review disputes" in index and "Start an out-of-fold run" not in index


def test_only_curators_retrain_and_the_new_evaluation_shows_beside_the_old(client, version, dataset, alice, bob):
    client.force_login(bob)
    assert client.post(f"/review/{dataset.pk}/versions/{version.pk}/retrain").status_code == 403
    assert not TrainingJob.objects.filter(retrain_of=version).exists()
    client.force_login(alice)
    response = client.post(f"/review/{dataset.pk}/versions/{version.pk}/retrain")
    assert response.status_code == 302
    job = TrainingJob.objects.get(retrain_of=version)
    assert job.architecture == version.architecture
    assert {k: job.config[k] for k in ("epochs", "seed", "hidden_units")} == {
        k: version.config[k] for k in ("epochs", "seed", "hidden_units")
    }
    from training.services import training_job_run

    job = training_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    text = client.get(f"/review/{dataset.pk}/versions/{version.pk}/").content.decode()
    assert 'id="comparison"' in text
    assert f"v{version.number} (reviewed)" in text and f"v{job.model_version.number} (retrained)" in text
    assert "Test accuracy" in text


def out_of_fold_run(dataset, faces, issues: dict[int, float]) -> OutOfFoldRun:
    """A finished run whose label issues are `issues` (face id -> self-confidence)."""
    run = OutOfFoldRun.objects.create(
        dataset=dataset,
        folds=5,
        classes=["female", "male"],
        status=JobStatus.SUCCEEDED,
        progress={
            "stage": "done",
            "faces": len(faces),
            "issues": len(issues),
            "thresholds": {"female": 0.7, "male": 0.7},
        },
    )
    for face in faces:
        p_given = issues.get(face.pk, 0.9)
        given = face.label
        other = "male" if given == "female" else "female"
        probs = {given: p_given, other: 1 - p_given}
        OutOfFoldScore.objects.create(
            run=run,
            face=face,
            given_label=given,
            probabilities=[probs["female"], probs["male"]],
            predicted_label=other if face.pk in issues else given,
            is_label_issue=face.pk in issues,
            issue_score=1 - p_given,
        )
    return run


def test_the_out_of_fold_queue_ranks_label_issues_by_self_confidence(alice_client, dataset, alice):
    faces = labelled_faces(dataset)
    issues = {faces[3].pk: 0.3, faces[7].pk: 0.05, faces[11].pk: 0.2}
    run = out_of_fold_run(dataset, faces, issues)
    assert [s.face_id for s in queues.out_of_fold_queue(run=run)] == [faces[7].pk, faces[11].pk, faces[3].pk]
    response = alice_client.get(f"/review/{dataset.pk}/runs/{run.pk}/")
    text = response.content.decode()
    assert 'data-ranking="out-of-fold"' in text and "confident learning on out-of-fold probabilities" in text
    assert text.index(f'data-id="{faces[7].pk}"') < text.index(f'data-id="{faces[11].pk}"')
    # Accept the out-of-fold model's label for the worst one: it leaves the run's queue.
    body = {"run": run.pk, "face": faces[7].pk, "decision": "a"}
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    faces[7].refresh_from_db()
    assert faces[7].label == OutOfFoldScore.objects.get(run=run, face=faces[7]).predicted_label
    assert ReviewDecision.objects.get(face=faces[7]).out_of_fold_run == run
    # A face relabelled elsewhere since the run has left the queue too.
    services.faces_update(
        user=alice,
        dataset=dataset,
        faces=[faces[11].pk],
        changes={"label": "male" if faces[11].label == "female" else "female"},
    )
    assert [s.face_id for s in queues.out_of_fold_queue(run=run)] == [faces[3].pk]


def test_a_face_that_is_no_label_issue_cannot_be_decided_in_the_run(alice_client, dataset):
    faces = labelled_faces(dataset)
    run = out_of_fold_run(dataset, faces, {faces[0].pk: 0.1})
    body = {"run": run.pk, "face": faces[5].pk, "decision": "c"}
    response = alice_client.post(
        f"/api/v1/datasets/{dataset.pk}/review/decisions/", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    assert "not in this out-of-fold run's queue" in response.json()["error"]["message"]


def test_the_active_learning_queue_lists_unlabelled_faces_least_sure_first(bob_client, version, dataset, alice):
    faces = list(Face.objects.filter(dataset=dataset).order_by("id")[10:20])
    services.faces_update(user=alice, dataset=dataset, faces=[f.pk for f in faces], changes={"label": ""})
    queue = list(queues.active_learning_queue(model_version=version))
    assert {p.face_id for p in queue} == {f.pk for f in faces}
    assert [p.confidence for p in queue] == sorted(p.confidence for p in queue)
    services.faces_update(user=alice, dataset=dataset, faces=[faces[0].pk], changes={"is_unsure": True})
    assert faces[0].pk not in {p.face_id for p in queues.active_learning_queue(model_version=version)}
    response = bob_client.get(f"/review/{dataset.pk}/versions/{version.pk}/unlabelled/")
    text = response.content.decode()
    assert response.status_code == 200 and "least confident first" in text
    assert f'data-id="{queue[0].face_id}"' in text
    assert f"/api/v1/datasets/{dataset.pk}/label-changes/" in text  # the labeling grid's own keys and endpoint


def test_the_index_lists_versions_and_runs(alice_client, version, dataset):
    faces = list(Face.objects.filter(dataset=dataset))
    out_of_fold_run(dataset, faces, {faces[0].pk: 0.1})
    text = alice_client.get(f"/review/{dataset.pk}/").content.decode()
    assert "Review disputes" in text and "Review label issues" in text and "Start an out-of-fold run" in text
