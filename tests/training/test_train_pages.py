"""The training pages, plots and API, and who may use them: alice (curator) trains, cancels and
activates; bob (annotator) may look but not train or activate; charlie sees nothing."""

import pytest
from django.urls import reverse

from training import services
from training.models import JobStatus, ModelVersion, TrainingJob

TINY = {"epochs": 1, "batch_size": 16, "input_size": 40}


@pytest.fixture
def trained(dataset, alice, training_faces):
    """Two versions of alice's dataset (two small embedding models: fast), trained in-process."""
    versions = []
    for architecture, config in (("embedding", {"epochs": 1, "hidden_units": 0}), ("embedding", {"epochs": 2})):
        job = services.training_job_create(
            dataset=dataset, user=alice, architecture=architecture, config=config, enqueue=False
        )
        services.training_job_run(job_id=job.pk)
        versions.append(ModelVersion.objects.get(job=job))
    return versions


def test_alice_queues_a_job_from_the_dataset_page(
    alice_client, dataset, training_faces, django_capture_on_commit_callbacks
):
    page = alice_client.get(reverse("curator:dataset_detail", args=[dataset.pk]))
    assert reverse("training:job_create", args=[dataset.pk]) in page.content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice_client.post(
            reverse("training:job_create", args=[dataset.pk]),
            {"architecture": "cnn", "epochs": "3", "seed": "7", "keep_best_on_cancel": "on"},
        )
    job = TrainingJob.objects.get()
    assert response.url == reverse("training:job_detail", args=[job.pk])
    assert len(callbacks) == 1  # the task is queued once the job row is committed
    assert job.config["epochs"] == 3 and job.config["seed"] == 7 and job.config["input_size"] == 64
    assert job.status == JobStatus.QUEUED and job.created_by.username == "alice"
    page = alice_client.get(response.url).content.decode()
    assert "Queued" in page and 'hx-trigger="every 2s"' in page and "Cancel job" in page


def test_bob_and_charlie_cannot_train(bob_client, charlie_client, dataset, training_faces):
    url = reverse("training:job_create", args=[dataset.pk])
    assert bob_client.get(url).status_code == 403
    assert bob_client.post(url, {"architecture": "cnn"}).status_code == 403
    assert "Train a model" not in bob_client.get(reverse("curator:dataset_detail", args=[dataset.pk])).content.decode()
    assert charlie_client.post(url, {"architecture": "cnn"}).status_code == 404
    api = reverse("api-training-jobs")
    body = {"dataset": dataset.pk, "architecture": "cnn"}
    assert bob_client.post(api, body, content_type="application/json").status_code == 403
    assert charlie_client.post(api, body, content_type="application/json").status_code == 404
    assert not TrainingJob.objects.exists()


def test_bob_sees_a_job_but_cannot_cancel_it_and_charlie_cannot_see_it(
    bob_client, charlie_client, client, alice, dataset, training_faces
):
    job = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
    assert bob_client.get(reverse("training:job_detail", args=[job.pk])).status_code == 200
    assert "Cancel job" not in bob_client.get(reverse("training:job_detail", args=[job.pk])).content.decode()
    assert bob_client.post(reverse("training:job_cancel", args=[job.pk])).status_code == 403
    for name in ("job_detail", "job_progress", "job_curves"):
        assert charlie_client.get(reverse(f"training:{name}", args=[job.pk])).status_code == 404
    assert charlie_client.post(reverse("training:job_cancel", args=[job.pk])).status_code == 404
    assert charlie_client.get(reverse("api-training-job", args=[job.pk])).status_code == 404
    assert charlie_client.get(reverse("api-training-jobs")).json()["results"] == []
    assert charlie_client.get(reverse("training:job_detail", args=[job.pk + 1000])).status_code == 404
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_anonymous_visitors_are_sent_to_log_in(client, dataset):
    response = client.get(reverse("training:dataset_training", args=[dataset.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response.url
    assert client.get(reverse("api-model-versions")).status_code in (401, 403)


def test_alice_cancels_a_queued_job(alice_client, alice, dataset, training_faces):
    job = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", enqueue=False)
    response = alice_client.post(reverse("training:job_cancel", args=[job.pk]), {"keep_best": "1"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_version_page_shows_the_evaluation_bias_and_plots(alice_client, trained):
    version = trained[0]
    page = alice_client.get(reverse("training:version_detail", args=[version.pk])).content.decode()
    assert "test accuracy" in page and "Per class" in page and "Accuracy per slice" in page
    assert version.snapshot in page and "datasets/" in version.artifact
    for kind in ("confusion", "calibration", "slices", "curves"):
        response = alice_client.get(reverse("training:version_plot", args=[version.pk, kind]))
        assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
        assert response.content.lstrip().startswith(b"<?xml") and b"<svg" in response.content
    assert alice_client.get(reverse("training:version_plot", args=[version.pk, "nothing"])).status_code == 404
    snapshot = alice_client.get(reverse("training:version_snapshot", args=[version.pk]))
    assert snapshot["Content-Type"] == "text/csv"
    assert b"face_id,crop,label,split" in b"".join(snapshot.streaming_content)


def test_job_page_progress_json_and_live_curves(alice_client, trained):
    job = trained[1].job
    progress = alice_client.get(reverse("training:job_progress", args=[job.pk])).json()
    assert progress["status"] == "succeeded" and progress["finished"] and progress["percent"] == 100
    assert progress["model_version"] == trained[1].pk and len(progress["history"]) == 2
    partial = alice_client.get(reverse("training:job_progress", args=[job.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial  # finished: the page stops polling
    assert "validation accuracy" in partial and "Done in" in partial
    curves = alice_client.get(reverse("training:job_curves", args=[job.pk]))
    assert curves["Content-Type"] == "image/svg+xml" and b"validation" in curves.content


def test_only_curators_activate_and_one_version_is_active(alice_client, bob_client, charlie_client, trained):
    first, second = trained
    # The dataset's first version was activated by its job; the second was not.
    assert ModelVersion.objects.get(is_active=True) == first
    alice_client.post(reverse("training:version_activate", args=[first.pk]), {"deactivate": "1"})
    assert bob_client.post(reverse("training:version_activate", args=[first.pk])).status_code == 403
    assert charlie_client.post(reverse("training:version_activate", args=[first.pk])).status_code == 404
    assert bob_client.post(reverse("api-model-version-activate", args=[first.pk])).status_code == 403
    first.refresh_from_db()
    assert not first.is_active
    alice_client.post(reverse("training:version_activate", args=[first.pk]))
    assert ModelVersion.objects.get(is_active=True) == first
    response = alice_client.post(reverse("api-model-version-activate", args=[second.pk]))
    assert response.status_code == 200 and response.json()["is_active"]
    assert ModelVersion.objects.get(is_active=True) == second
    alice_client.post(reverse("training:version_activate", args=[second.pk]), {"deactivate": "1"})
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_the_first_version_is_activated_and_the_job_page_and_models_table_say_so(alice_client, bob_client, trained):
    first, second = trained
    assert "is the dataset's first: it is now the active model" in first.job.log
    page = alice_client.get(reverse("training:job_detail", args=[first.job_id])).content.decode()
    assert (
        "Version 1 is the active model of this dataset: the dataset's first version is activated automatically" in page
    )
    page = alice_client.get(reverse("training:job_detail", args=[second.job_id])).content.decode()
    assert "Version 2 is <b>not active</b>" in page and 'id="activate-version"' in page
    # One click on the job page activates it and comes back to the job page.
    response = alice_client.post(
        reverse("training:version_activate", args=[second.pk]), {"next": f"/training/jobs/{second.job_id}/"}
    )
    assert response.status_code == 302 and response["Location"] == f"/training/jobs/{second.job_id}/"
    assert ModelVersion.objects.get(is_active=True) == second
    # An outside address is not followed.
    response = alice_client.post(
        reverse("training:version_activate", args=[first.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("training:version_detail", args=[first.pk])
    # The models table (v1 active again): an "active" column, with Activate for the others (curators only).
    table = alice_client.get(reverse("training:dataset_training", args=[first.dataset_id])).content.decode()
    assert "<th>active</th>" in table and 'class="badge on">active</span>' in table
    assert f'form="activate-{second.pk}"' in table and f'id="activate-{second.pk}"' in table
    assert f'id="activate-{first.pk}"' not in table
    other = bob_client.get(reverse("training:dataset_training", args=[first.dataset_id])).content.decode()
    assert 'id="activate-' not in other


def test_compare_two_versions_side_by_side(alice_client, charlie_client, dataset, trained):
    a, b = trained
    url = reverse("training:version_compare", args=[dataset.pk])
    response = alice_client.get(url, {"a": a.pk, "b": b.pk})
    assert response.status_code == 200
    comparison = response.context["comparison"]
    pa = dict(a.predictions.values_list("face_id", "predicted_label"))
    pb = dict(b.predictions.values_list("face_id", "predicted_label"))
    assert comparison["differ"] == sum(1 for f in pa if pa[f] != pb[f])
    assert {r["face"].pk for r in comparison["rows"]} == {f for f in pa if pa[f] != pb[f]}
    assert "Test accuracy" in response.content.decode()
    assert charlie_client.get(url, {"a": a.pk, "b": b.pk}).status_code == 404
    assert alice_client.get(url, {"a": a.pk, "b": "x"}).status_code == 404


def test_dataset_models_page_and_api_list_versions(alice_client, bob_client, charlie_client, dataset, trained):
    page = alice_client.get(reverse("training:dataset_training", args=[dataset.pk])).content.decode()
    assert "v1" in page and "v2" in page and "Train a model" in page
    assert (
        "Train a model" not in bob_client.get(reverse("training:dataset_training", args=[dataset.pk])).content.decode()
    )
    rows = bob_client.get(reverse("api-model-versions"), {"dataset": dataset.pk}).json()["results"]
    assert [r["number"] for r in rows] == [2, 1]
    assert charlie_client.get(reverse("api-model-version", args=[trained[0].pk])).status_code == 404
    assert charlie_client.get(reverse("training:version_detail", args=[trained[0].pk])).status_code == 404
    assert charlie_client.get(reverse("training:version_snapshot", args=[trained[0].pk])).status_code == 404
    assert charlie_client.get(reverse("training:dataset_training", args=[dataset.pk])).status_code == 404
