"""Activation is obvious (issue 20): the dataset's first version is active as soon as its job
succeeds and the job page says so; a later version is one click away from being active, on
its job page and in the models table, which has an "active" column."""

import pytest
from django.urls import reverse

from tests.browser.conftest import logged_in_pages
from tests.training.factories import add_faces, fixture_face_rows
from training import services
from training.models import ModelVersion

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


def train(dataset, user) -> ModelVersion:
    job = services.training_job_create(
        dataset=dataset, user=user, architecture="embedding", config={"epochs": 1, "hidden_units": 0}, enqueue=False
    )
    services.training_job_run(job_id=job.pk)
    return ModelVersion.objects.get(job=job)


def test_first_version_active_then_one_click_activation(
    small_page, transactional_db, alice, bob, dataset, fixture_faces
):
    dataset.min_faces_per_class = 5
    dataset.save(update_fields=["min_faces_per_class"])
    add_faces(dataset, fixture_face_rows(fixture_faces))
    first, second = train(dataset, alice), train(dataset, alice)

    page = small_page(alice)
    page.goto(reverse("training:job_detail", args=[first.job_id]))
    assert "Version 1 is the active model of this dataset" in page.inner_text("#job-activation")
    assert "first version is activated automatically" in page.inner_text("#job-activation")

    page.goto(reverse("training:job_detail", args=[second.job_id]))
    assert "Version 2 is not active; the active model is version 1." in page.inner_text("#job-activation")
    page.click("#activate-version")
    page.wait_for_url(f"**{reverse('training:job_detail', args=[second.job_id])}")
    assert "Version 2 is now the active model" in page.inner_text(".messages")
    assert "Version 2 is the active model of this dataset" in page.inner_text("#job-activation")
    assert ModelVersion.objects.get(is_active=True) == second

    # The models table: the active column, and Activate on the other version.
    page.goto(reverse("training:dataset_training", args=[dataset.pk]))
    rows = page.locator("table").first.locator("tr")
    assert rows.nth(0).locator("th").nth(2).inner_text() == "active"
    page.click(f"button[form='activate-{first.pk}']")
    page.wait_for_url(f"**{reverse('training:dataset_training', args=[dataset.pk])}")
    assert ModelVersion.objects.get(is_active=True) == first
    assert page.locator(f"button[form='activate-{second.pk}']").is_visible()
    assert page.locator(f"button[form='activate-{first.pk}']").count() == 0
    # Everything fits the width of a 1366-px window.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # An annotator sees which is active, with no button.
    other = small_page(bob)
    other.goto(reverse("training:dataset_training", args=[dataset.pk]))
    assert other.locator("button.activate").count() == 0 and other.locator(".active-cell .badge").count() == 1
