"""Every number true (issue 20, item 8): the version page's disputed count is the review queue's,
a job shows the same epochs on its page and in the models table, "best epoch 0" is explained
when the linear head won, no "queued" banner outlives the job, and "assign splits again" is
advised only when people do straddle train and test."""

from django.urls import reverse

from curator.models import Face
from review import selectors as queues
from training import services
from training.models import ModelVersion, Prediction, TrainingJob


def test_a_trained_versions_pages_agree_with_each_other(alice, alice_client, dataset, training_faces):
    job = services.training_job_create(dataset=dataset, user=alice, architecture="embedding", config={}, enqueue=False)
    services.training_job_run(job_id=job.pk)
    job.refresh_from_db()
    version = ModelVersion.objects.get(job=job)

    # Epochs: the job page and the models table show one figure.
    progress = alice_client.get(reverse("training:job_progress", args=[job.pk])).json()
    table = alice_client.get(reverse("training:dataset_training", args=[dataset.pk])).content.decode()
    assert progress["epoch"] == len(job.history) == job.epoch_shown
    assert f"<td>{job.epoch_shown} / {job.epochs}</td>" in table

    # Best epoch: on 41 faces the linear head wins, and the page says so instead of "Best epoch 0".
    page = alice_client.get(reverse("training:version_detail", args=[version.pk])).content.decode()
    if version.config.get("head") == "linear":
        assert "The linear head won" in page and "Best epoch 0" not in page
        if job.history:
            assert "the job's curves are the dense head's, which lost" in page

    # Disputed: an excluded face is out of the data, on the version page as in the queue.
    disputed = list(Prediction.objects.filter(model_version=version, disagrees=True).values_list("face_id", flat=True))
    if not disputed:  # make one: relabel a face against the model
        p = Prediction.objects.filter(model_version=version).exclude(face__label="").first()
        other = "male" if p.predicted_label == "female" else "female"
        from labeling import services as labeling_services

        labeling_services.faces_update(user=alice, dataset=dataset, faces=[p.face_id], changes={"label": other})
        disputed = [p.face_id]
    Face.objects.filter(pk=disputed[0]).update(is_excluded=True)
    response = alice_client.get(reverse("training:version_detail", args=[version.pk]))
    assert response.context["drill"]["disputed"] == queues.disagreement_queue(model_version=version).count()
    assert "excluded=0" in response.context["drill"]["disputed_url"]

    # Identity leakage: the advice only when someone is on both sides.
    version.metrics["identity_leakage"] = {"leaked": 0, "test": 6, "clustered": 6}
    version.save(update_fields=["metrics"])
    page = alice_client.get(reverse("training:version_detail", args=[version.pk])).content.decode()
    assert "Same person in train and test" in page and "Assign splits again" not in page
    version.metrics["identity_leakage"] = {"leaked": 2, "test": 6, "clustered": 6}
    version.save(update_fields=["metrics"])
    assert (
        "Assign splits again"
        in alice_client.get(reverse("training:version_detail", args=[version.pk])).content.decode()
    )


def test_no_queued_banner_stays_on_the_job_page(
    alice_client, dataset, training_faces, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        response = alice_client.post(
            reverse("training:job_create", args=[dataset.pk]), {"architecture": "embedding"}, follow=True
        )
    job = TrainingJob.objects.get()
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("training:job_detail", args=[job.pk])
    assert "queued." not in body  # the page's own status says Queued, and follows the job
    assert 'id="job-status">Queued<' in body
