"""Guidance on the train form: which architecture suits a dataset, how long it should take, the
warning for a CNN on a few hundred faces, and the form's defaults (embedding, no version kept on
cancel) on the page, the admin action and the API."""

import pytest
from django.urls import reverse

from curator.models import Dataset, Membership
from training import guidance
from training.forms import TrainingJobForm
from training.guidance import architecture_recommend, training_time_estimate
from training.models import Architecture, ModelVersion, TrainingJob

GENDER = ["female", "male"]


def version(dataset, number: int, architecture: str = "embedding", classes=("female", "male")) -> ModelVersion:
    """A registered version row (no artifact needed: the form only lists them)."""
    return ModelVersion.objects.create(
        dataset=dataset,
        number=number,
        architecture=architecture,
        artifact=f"datasets/{dataset.pk}/models/v{number}.keras",
        classes=list(classes),
        metrics={"accuracy": 0.9},
    )


# --- Recommendations -------------------------------------------------------------------------


def test_a_small_female_male_dataset_gets_the_pretrained_network():
    rec = architecture_recommend(n_faces=60, classes=GENDER)
    assert rec.architecture == "pretrained"
    assert "fewer than 50 labelled faces" in rec.reason and "needs no training" in rec.reason
    assert rec.seconds > 0
    # Per-class counts decide when given: 30 + 400 faces still has a class with too few.
    assert architecture_recommend(
        n_faces=430, classes=GENDER, faces_per_class={"female": 30, "male": 400}
    ).architecture == ("pretrained")


def test_a_mid_sized_dataset_gets_embedding_and_is_told_a_cnn_would_over_fit():
    rec = architecture_recommend(n_faces=400, classes=GENDER, faces_per_class={"female": 200, "male": 200})
    assert rec.architecture == "embedding"
    assert "would over-fit" in rec.reason


def test_a_large_dataset_gets_finetune_with_its_time_and_embedding_stays_the_quick_choice():
    rec = architecture_recommend(n_faces=4000, classes=GENDER)
    assert rec.architecture == "finetune" and "is worth its about" in rec.reason
    assert "Train embedding first" in rec.reason
    # The bench's 4,000 faces: minutes, not hours (README: finetune on the dev set).
    assert 5 * 60 < rec.seconds < 20 * 60
    embedding = training_time_estimate(architecture="embedding", n_faces=4000, config={})
    # Descriptors on onnxruntime (2 processes): about a minute, and seconds once cached.
    assert 30 < embedding < 3 * 60
    assert training_time_estimate(architecture="embedding", n_faces=4000, config={}, descriptors_cached=4000) < 60


def test_finetune_is_not_recommended_below_its_minimum_or_above_its_time_budget(monkeypatch):
    rec = architecture_recommend(n_faces=900, classes=GENDER)
    assert rec.architecture == "embedding" and "finetune" not in rec.reason
    monkeypatch.setattr(guidance, "FINETUNE_S_PER_FACE_EPOCH", 1.0)  # a much slower machine
    slow = architecture_recommend(n_faces=4000, classes=GENDER)
    assert slow.architecture == "embedding" and "finetune is more accurate but would take about" in slow.reason
    assert "cnn is possible too" in slow.reason


def test_other_classes_get_embedding_and_the_pretrained_network_is_unavailable():
    classes = ["cat", "dog"]
    rec = architecture_recommend(n_faces=20, classes=classes)
    assert rec.architecture == "embedding"  # even tiny: the pretrained network cannot answer cat/dog
    assert "answers only female/male" in rec.reason
    why = guidance.architecture_unavailable(architecture="pretrained", classes=classes)
    assert "only female/male" in why and "cat, dog" in why
    assert guidance.architecture_unavailable(architecture="pretrained", classes=GENDER) == ""
    # An ensemble of two cat/dog versions is fine; it needs the versions first.
    assert guidance.architecture_unavailable(architecture="ensemble", classes=classes, n_versions=2) == ""
    assert "two or more versions" in guidance.architecture_unavailable(
        architecture="ensemble", classes=classes, n_versions=1
    )
    _, rows = guidance.architecture_rows(n_faces=20, classes=classes, n_versions=3)
    rows = {r.architecture: r for r in rows}
    assert rows["pretrained"].unavailable and rows["pretrained"].seconds is None
    assert rows["embedding"].recommended and rows["embedding"].seconds
    assert not rows["ensemble"].unavailable and rows["ensemble"].seconds


def test_the_cnn_warning_is_for_cnns_on_fewer_than_2000_faces():
    for architecture in ("cnn", "seed-cnn"):
        warning = guidance.architecture_warning(architecture=architecture, n_faces=300)
        assert "300 labelled faces" in warning and "over-fits" in warning and "embedding" in warning
        assert guidance.architecture_warning(architecture=architecture, n_faces=5000) == ""
    assert guidance.architecture_warning(architecture="embedding", n_faces=30) == ""


# --- Time estimates ----------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", [a for a, _ in Architecture.choices])
def test_time_estimates_grow_with_the_number_of_faces(architecture):
    times = [training_time_estimate(architecture=architecture, n_faces=n, config={}) for n in (0, 100, 1000, 10000)]
    assert times == sorted(times) and times[0] < times[-1]
    assert all(t > 0 for t in times)


def test_time_estimates_follow_the_bench_figures_and_the_config():
    # cnn: ~770 s on the bench's 4,300 faces (3,009 train) with its 40-epoch, 64-px default.
    assert training_time_estimate(architecture="cnn", n_faces=4300, config={}) == pytest.approx(770, rel=0.1)
    # A larger input costs more per epoch.
    assert training_time_estimate(architecture="cnn", n_faces=4300, config={"input_size": 96}) > 1.5 * 770
    # seed-cnn: 537 s for 20 epochs on the same faces.
    assert training_time_estimate(architecture="seed-cnn", n_faces=4000, config={"epochs": 20}) == pytest.approx(
        537, rel=0.1
    )
    half = training_time_estimate(architecture="cnn", n_faces=4000, config={"epochs": 25})
    assert half < training_time_estimate(architecture="cnn", n_faces=4000, config={"epochs": 50})
    # Cached descriptors make the embedding model quick; the linear head alone is quicker still.
    uncached = training_time_estimate(architecture="embedding", n_faces=4000, config={})
    cached = training_time_estimate(architecture="embedding", n_faces=4000, config={}, descriptors_cached=4000)
    linear = training_time_estimate(
        architecture="embedding",
        n_faces=4000,
        config={"head": "linear", "pretrained_feature": "no"},
        descriptors_cached=4000,
    )
    assert linear < cached < uncached
    assert guidance.duration_text(12.4) == "about 12 s" and guidance.duration_text(625) == "about 10 min"


# --- The form page -------------------------------------------------------------------------


def test_the_form_page_shows_counts_recommendation_and_times(alice_client, dataset, training_faces):
    page = alice_client.get(reverse("training:job_create", args=[dataset.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    advice = page.context["guidance"]
    females = sum(1 for f in training_faces if f.label == "female")
    assert advice.per_class == {"female": females, "male": len(training_faces) - females}
    assert f"<b>female</b> {females}" in body and f"{len(training_faces)} in all" in body
    # 41 fixture faces, female/male: the pretrained network (the package is installed here).
    assert advice.recommendation.architecture == "pretrained"
    assert 'id="recommendation"' in body and "needs no training" in body
    for architecture, _ in Architecture.choices:
        assert f'data-architecture="{architecture}"' in body
    assert "Unavailable until the dataset has two or more versions" in body  # ensemble, no versions yet
    assert "training/job_form.js" in body


def test_the_cnn_warning_shows_on_the_form_page_of_a_small_dataset(alice_client, dataset, training_faces):
    url = reverse("training:job_create", args=[dataset.pk])
    default = alice_client.get(url).content.decode()
    # Present for the script, hidden while embedding is chosen.
    assert 'id="cnn-warning" hidden' in default and "over-fits" in default
    chosen = alice_client.get(url, {"architecture": "cnn"}).content.decode()
    assert 'id="cnn-warning">' in chosen
    assert f"This dataset has {len(training_faces)} labelled faces. A CNN trained from scratch" in chosen
    # After a POST with errors the page keeps the choice and the warning.
    again = alice_client.post(url, {"architecture": "seed-cnn", "epochs": "0"}).content.decode()
    assert 'id="cnn-warning">' in again and "between 1 and 500" in again


def test_queueing_a_cnn_on_a_small_dataset_warns_on_the_job_page(alice_client, dataset, training_faces):
    response = alice_client.post(
        reverse("training:job_create", args=[dataset.pk]), {"architecture": "cnn", "epochs": "2"}, follow=True
    )
    job = TrainingJob.objects.get()
    assert job.architecture == "cnn"
    assert "over-fits" in response.content.decode()


def test_the_pretrained_network_missing_falls_back_to_embedding(
    alice_client, dataset, training_faces, settings, tmp_path
):
    settings.CURATOR_PRETRAINED_GENDER_MODEL = str(tmp_path / "missing.onnx")
    page = alice_client.get(reverse("training:job_create", args=[dataset.pk]))
    advice = page.context["guidance"]
    assert advice.recommendation.architecture == "embedding"
    assert "cannot be used" in advice.recommendation.reason and "missing" in advice.recommendation.reason
    assert advice.unavailable["pretrained"].startswith("Unavailable")


def test_the_form_defaults_to_embedding_without_keeping_a_version_on_cancel(dataset):
    form = TrainingJobForm(dataset=dataset)
    assert form["architecture"].value() == "embedding"
    assert form["keep_best_on_cancel"].value() is False
    bound = TrainingJobForm({"architecture": "embedding"}, dataset=dataset)
    assert bound.is_valid(), bound.errors
    assert bound.cleaned_data["keep_best_on_cancel"] is False and bound.cleaned_data["overrides"] == {}
    assert bound.cleaned_data["config"]["head"] == "auto"


def test_the_new_settings_are_choices_with_a_default_and_checked_per_architecture(dataset):
    form = TrainingJobForm({"architecture": "embedding", "head": "linear", "pretrained_feature": "no"}, dataset=dataset)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["overrides"] == {"head": "linear", "pretrained_feature": "no"}
    assert [c for c, _ in form.fields["combine"].choices] == ["", "auto", "average", "stacked"]
    form = TrainingJobForm({"architecture": "cnn", "head": "dense"}, dataset=dataset)
    assert not form.is_valid() and "Not a setting of the cnn model" in form.errors["head"][0]
    form = TrainingJobForm({"architecture": "embedding", "head": "forest"}, dataset=dataset)
    assert not form.is_valid() and "head" in form.errors


def test_the_members_field_offers_only_this_datasets_versions(dataset, alice):
    mine = [version(dataset, 1), version(dataset, 2, "cnn")]
    other = Dataset.objects.create(name="other", created_by=alice)
    theirs = version(other, 1)
    nested = version(dataset, 3, "ensemble")
    form = TrainingJobForm(dataset=dataset)
    offered = [value for value, _ in form.fields["members"].choices]
    assert offered == [str(mine[1].pk), str(mine[0].pk)]
    assert str(theirs.pk) not in offered and str(nested.pk) not in offered
    ok = TrainingJobForm(
        {"architecture": "ensemble", "members": [str(v.pk) for v in mine], "combine": "average"}, dataset=dataset
    )
    assert ok.is_valid(), ok.errors
    assert ok.cleaned_data["config"]["members"] == [mine[0].pk, mine[1].pk]
    assert ok.cleaned_data["config"]["combine"] == "average"


def test_a_bad_member_id_is_a_form_error(alice_client, dataset, alice, training_faces):
    mine = version(dataset, 1)
    other = Dataset.objects.create(name="other", created_by=alice)
    Membership.objects.create(dataset=other, user=alice, role=Membership.Role.CURATOR)
    theirs = version(other, 1)
    url = reverse("training:job_create", args=[dataset.pk])
    for bad in (str(theirs.pk), "999999", "x"):
        response = alice_client.post(url, {"architecture": "ensemble", "members": [str(mine.pk), bad]})
        assert response.status_code == 200
        assert "members" in response.context["form"].errors, bad
    one = alice_client.post(url, {"architecture": "ensemble", "members": [str(mine.pk)]})
    assert "two or more versions" in one.context["form"].errors["members"][0]
    assert not TrainingJob.objects.exists()


def test_pretrained_is_refused_for_other_classes(alice_client, dataset, training_faces):
    dataset.classes = ["cat", "dog"]
    dataset.save(update_fields=["classes"])
    url = reverse("training:job_create", args=[dataset.pk])
    response = alice_client.post(url, {"architecture": "pretrained"})
    assert response.status_code == 200
    assert "only female/male" in response.context["form"].errors["architecture"][0]
    page = alice_client.get(url, {"architecture": "pretrained"}).content.decode()
    assert 'id="unavailable-note">Unavailable: the pretrained network answers only female/male' in page
    assert not TrainingJob.objects.exists()


# --- Admin action and API defaults -------------------------------------------------------------


def test_the_admin_action_shows_the_recommendation_and_defaults(client, admin_user, dataset, training_faces):
    client.force_login(admin_user)
    url = reverse("admin:curator_dataset_changelist")
    page = client.post(url, {"action": "train_on_dataset", "_selected_action": [dataset.pk]})
    body = page.content.decode()
    assert page.status_code == 200 and 'id="guidance"' in body and "needs no training" in body
    assert page.context["form"]["architecture"].value() == "embedding"
    assert page.context["form"]["keep_best_on_cancel"].value() is False
    client.post(
        url, {"action": "train_on_dataset", "_selected_action": [dataset.pk], "apply": "1", "architecture": "embedding"}
    )
    job = TrainingJob.objects.get()
    assert job.architecture == "embedding" and job.keep_best_on_cancel is False


def test_the_api_defaults_to_embedding_without_keeping_a_version_on_cancel(alice_client, dataset, training_faces):
    response = alice_client.post(reverse("api-training-jobs"), {"dataset": dataset.pk}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["architecture"] == "embedding" and response.json()["keep_best_on_cancel"] is False
    job = TrainingJob.objects.get()
    assert job.architecture == "embedding" and not job.keep_best_on_cancel


def test_the_api_refuses_members_of_another_dataset(alice_client, dataset, alice, training_faces):
    mine = version(dataset, 1)
    theirs = version(Dataset.objects.create(name="other", created_by=alice), 1)
    response = alice_client.post(
        reverse("api-training-jobs"),
        {"dataset": dataset.pk, "architecture": "ensemble", "config": {"members": [mine.pk, theirs.pk]}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert str(theirs.pk) in response.json()["error"]["fields"]["config"]["members"]
    assert not TrainingJob.objects.exists()


def test_cancelling_without_asking_keeps_no_version(alice_client, alice, dataset, training_faces):
    from training import services

    running = services.training_job_create(
        dataset=dataset, user=alice, architecture="embedding", keep_best_on_cancel=True, enqueue=False
    )
    TrainingJob.objects.filter(pk=running.pk).update(status="running")
    alice_client.post(reverse("training:job_cancel", args=[running.pk]))  # the page's box left unticked
    running.refresh_from_db()
    assert running.cancel_requested and running.keep_best_on_cancel is False

    # The API keeps the choice made when the job was queued unless told otherwise.
    asked = services.training_job_create(
        dataset=dataset, user=alice, architecture="embedding", keep_best_on_cancel=True, enqueue=False
    )
    TrainingJob.objects.filter(pk=asked.pk).update(status="running")
    alice_client.post(reverse("api-training-job-cancel", args=[asked.pk]), {}, content_type="application/json")
    asked.refresh_from_db()
    assert asked.cancel_requested and asked.keep_best_on_cancel is True
