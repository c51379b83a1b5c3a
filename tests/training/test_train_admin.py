"""The admin action "Train a model on the selected datasets" with its intermediate form."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from curator.models import Dataset
from training.models import TrainingJob

CHANGELIST = "admin:curator_dataset_changelist"


@pytest.fixture
def admin_client_logged(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_action_asks_for_settings_then_queues_a_job(
    admin_client_logged, dataset, training_faces, django_capture_on_commit_callbacks
):
    url = reverse(CHANGELIST)
    form = admin_client_logged.post(url, {"action": "train_on_dataset", "_selected_action": [dataset.pk]})
    assert form.status_code == 200
    assert "Queue training" in form.content.decode() and dataset.name in form.content.decode()
    assert not TrainingJob.objects.exists()
    with django_capture_on_commit_callbacks() as callbacks:
        done = admin_client_logged.post(
            url,
            {
                "action": "train_on_dataset",
                "_selected_action": [dataset.pk],
                "apply": "1",
                "architecture": "embedding",
                "epochs": "5",
            },
            follow=True,
        )
    job = TrainingJob.objects.get()
    assert job.architecture == "embedding" and job.config["epochs"] == 5 and job.dataset == dataset
    assert len(callbacks) == 1
    # The message links the job's page, where its progress and result are.
    assert f'<a href="/training/jobs/{job.pk}/">training job {job.pk}</a> queued' in done.content.decode()


def test_the_action_reports_datasets_it_cannot_train(admin_client_logged, dataset, training_faces, admin_user):
    empty = Dataset.objects.create(name="empty", created_by=admin_user)
    response = admin_client_logged.post(
        reverse(CHANGELIST),
        {"action": "train_on_dataset", "_selected_action": [dataset.pk, empty.pk], "apply": "1", "architecture": "cnn"},
        follow=True,
    )
    body = response.content.decode()
    assert "Empty: not queued" in body and "at least two classes" in body
    assert list(TrainingJob.objects.values_list("dataset__name", flat=True)) == ["faces"]


def test_the_action_refuses_bad_settings(admin_client_logged, dataset, training_faces):
    response = admin_client_logged.post(
        reverse(CHANGELIST),
        {
            "action": "train_on_dataset",
            "_selected_action": [dataset.pk],
            "apply": "1",
            "architecture": "cnn",
            "epochs": "0",
        },
    )
    assert response.status_code == 200 and "between 1 and 500" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_staff_who_do_not_curate_cannot_train_from_the_admin(client, dataset, training_faces):
    # A staff user is a curator everywhere in Curator; a plain user never reaches the admin.
    user = User.objects.create_user("eve", password="x", is_staff=False)
    client.force_login(user)
    response = client.post(reverse(CHANGELIST), {"action": "train_on_dataset", "_selected_action": [dataset.pk]})
    assert response.status_code == 302 and "/admin/login/" in response.url
    assert not TrainingJob.objects.exists()
