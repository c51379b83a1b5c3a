"""Every way a curator can ask for an impossible job gets a clear error before any training."""

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from training import services
from training.config import ConfigError, config_build
from training.data import TrainingDataError
from training.models import JobStatus, TrainingJob


def create(dataset, user, architecture="cnn", **config):
    return services.training_job_create(
        dataset=dataset, user=user, architecture=architecture, config=config, enqueue=False
    )


def test_fewer_than_two_classes_with_faces_is_refused(dataset, alice, training_faces):
    for face in training_faces:
        if face.label == "male":
            face.label = ""
            face.save(update_fields=["label"])
    with pytest.raises(TrainingDataError, match="at least two classes"):
        create(dataset, alice)
    assert not TrainingJob.objects.exists()


def test_an_empty_dataset_is_refused(dataset, alice):
    with pytest.raises(TrainingDataError, match="at least two classes"):
        create(dataset, alice)


def test_a_class_below_the_minimum_is_refused(dataset, alice, training_faces):
    females = sum(1 for f in training_faces if f.label == "female")
    males = sum(1 for f in training_faces if f.label == "male")
    dataset.min_faces_per_class = max(females, males)
    dataset.save(update_fields=["min_faces_per_class"])
    small = "female" if females < males else "male"
    with pytest.raises(TrainingDataError, match=f"{small} has {min(females, males)}"):
        create(dataset, alice)


def test_excluded_and_unsure_faces_do_not_count(dataset, alice, training_faces):
    for face in training_faces:
        if face.label == "male":
            face.is_excluded = True
            face.save(update_fields=["is_excluded"])
    with pytest.raises(TrainingDataError, match="at least two classes"):
        create(dataset, alice)


def test_an_empty_split_is_refused(dataset, alice, training_faces):
    for face in training_faces:
        face.split = "train" if face.pk % 2 else "val"
        face.save(update_fields=["split"])
    with pytest.raises(TrainingDataError, match="The test split has no faces"):
        create(dataset, alice)


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"epochs": 0}, "epochs", "between 1 and 500"),
        ({"epochs": 10_000}, "epochs", "between 1 and 500"),
        ({"learning_rate": 5}, "learning_rate", "between"),
        ({"batch_size": "many"}, "batch_size", "integer"),
        ({"input_size": 8}, "input_size", "between 32 and 256"),
        ({"lr_schedule": "sometimes"}, "lr_schedule", "one of"),
        ({"hidden_units": 64}, "hidden_units", "not a setting of the cnn model"),
        ({"colour": "blue"}, "colour", "not a setting"),
    ],
)
def test_config_values_out_of_range_are_refused(dataset, alice, training_faces, config, key, message):
    with pytest.raises(ConfigError, match=message) as excinfo:
        create(dataset, alice, **config)
    assert key in excinfo.value.errors
    assert not TrainingJob.objects.exists()


def test_unknown_architecture_is_refused():
    with pytest.raises(ConfigError, match="unknown architecture"):
        config_build("resnet-9000")


def test_missing_crop_files_fail_the_job_before_training(dataset, alice, training_faces):
    job = create(dataset, alice, "seed-cnn", epochs=1)
    default_storage.delete(training_faces[3].crop)
    default_storage.delete(training_faces[7].crop)
    job = services.training_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "2 crop files are missing" in job.error
    assert training_faces[3].crop in job.error
    assert job.history == [] and not hasattr(job, "model_version")


def test_the_form_shows_data_errors_and_creates_nothing(alice_client, dataset, training_faces):
    dataset.min_faces_per_class = 100
    dataset.save(update_fields=["min_faces_per_class"])
    response = alice_client.post(reverse("training:job_create", args=[dataset.pk]), {"architecture": "embedding"})
    assert response.status_code == 200
    assert "at least 100 labelled faces" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_the_form_shows_config_errors_next_to_the_field(alice_client, dataset, training_faces):
    response = alice_client.post(
        reverse("training:job_create", args=[dataset.pk]),
        {"architecture": "embedding", "epochs": "0", "input_size": "96"},
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert "between 1 and 500" in form.errors["epochs"][0]
    assert "Not a setting of the embedding model" in form.errors["input_size"][0]
    assert not TrainingJob.objects.exists()


def test_the_api_answers_400_with_the_reason(alice_client, dataset, training_faces):
    url = reverse("api-training-jobs")
    response = alice_client.post(
        url, {"dataset": dataset.pk, "architecture": "cnn", "config": {"epochs": -1}}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "epochs" in response.json()["error"]["fields"]["config"]
    dataset.min_faces_per_class = 100
    dataset.save(update_fields=["min_faces_per_class"])
    response = alice_client.post(url, {"dataset": dataset.pk, "architecture": "cnn"}, content_type="application/json")
    assert response.status_code == 400
    assert "at least 100" in response.json()["error"]["fields"]["dataset"][0]
    assert not TrainingJob.objects.exists()
