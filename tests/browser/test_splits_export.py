"""Splits and export in Chromium at 1366x768 (issue 20): "Assign splits" shows what it would move
and waits for Confirm; the dataset page exports the splits a version was trained with."""

import pytest

from curator.models import Face
from tests.browser.conftest import logged_in_pages
from tests.labeling.factories import make_faces
from tests.labeling.test_splits_and_export import _version_with_snapshot

pytestmark = pytest.mark.browser


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


def test_assign_splits_is_previewed_and_export_takes_a_versions_splits(
    transactional_db, start_worker, small_page, alice, dataset
):
    faces = make_faces(dataset, 12, labels=["female", "male"])
    page = small_page(alice)
    page.goto(f"/labeling/{dataset.pk}/curate/")
    page.fill("#split-form input[name=seed]", "3")
    page.click("#split-form button[type=submit]")
    page.wait_for_selector("#splits-preview")
    assert "This gives 12 faces a new split" in page.inner_text("#preview-count")
    assert "none → train" in page.inner_text("#preview-moves")
    assert page.locator("#preview-sample img").count() == 12
    assert not Face.objects.filter(dataset=dataset).exclude(split="").exists()  # nothing yet
    page.check("#confirm-large")
    page.click("#confirm-action")
    page.wait_for_selector(".messages")
    assert "Splits assigned with seed 3: 12 face(s) moved." in page.inner_text(".messages")
    assert not Face.objects.filter(dataset=dataset, split="").exists()

    version = _version_with_snapshot(dataset, {f.pk: "train" for f in faces[:8]} | {f.pk: "test" for f in faces[8:]})
    page.goto(f"/datasets/{dataset.pk}/")
    page.wait_for_selector("#export-form")
    # The dataset has splits of its own now, so they are the default; the version's are offered.
    assert page.locator("#export-splits").input_value() == "dataset"
    page.select_option("#export-splits", f"version:{version.pk}")
    page.click("#build-export")
    page.wait_for_url(f"**/datasets/{dataset.pk}/")
    assert "Export started" in page.inner_text(".messages")
    # An export is a background job: a worker builds it while the panel shows its progress, and
    # the panel lists the zip once it is done.
    start_worker(queues="align", concurrency=1)
    page.locator("#exports a", has_text="v1-splits.zip").wait_for(timeout=120_000)
