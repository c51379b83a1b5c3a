"""A curator queues a training job from the dataset page in a real browser and watches the job
page update by itself (htmx polling) until the version it produced is linked."""

import pytest
from django.urls import reverse

from tests.training.factories import add_faces, fixture_face_rows
from training import services
from training.models import TrainingJob

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def training_faces(dataset, fixture_faces):
    dataset.min_faces_per_class = 5
    dataset.save(update_fields=["min_faces_per_class"])
    return add_faces(dataset, fixture_face_rows(fixture_faces))


def test_alice_trains_a_model_and_watches_the_job_page(new_page, transactional_db, alice, dataset, training_faces):
    page = new_page(alice)
    page.goto(reverse("curator:dataset_detail", args=[dataset.pk]))
    page.click("#train-model")
    page.select_option("select[name=architecture]", "embedding")
    page.fill("input[name=epochs]", "3")
    page.click("#start-training")
    page.wait_for_selector("#job-status")
    assert "Queued" in page.inner_text("#job-status")
    job = TrainingJob.objects.get()
    assert page.url.endswith(reverse("training:job_detail", args=[job.pk]))

    # The worker's part, run here: the open page must pick up the result on its own.
    services.training_job_run(job_id=job.pk)
    page.wait_for_selector("#job-status.status-succeeded", timeout=15_000)
    assert "Succeeded" in page.inner_text("#job-status")
    assert "3 / 3" in page.inner_text("#job-epoch")
    assert "epoch 3:" in page.inner_text("#job-log")
    # The curves image was just swapped in with the final status: wait for it to load, then check.
    page.wait_for_function(
        "() => { const img = document.querySelector('#job-curves'); return img && img.complete && img.naturalWidth > 0; }"
    )
    # The dataset's first version is activated by the job, and the job page says so.
    assert "Version 1 is the active model of this dataset" in page.inner_text("#job-activation")
    page.click("#job-version")
    page.wait_for_selector("#test-accuracy")
    page.wait_for_selector("#active-badge")
