"""The model follows the data (issue 20): with an active version, photos imported from the
browser get that version's predictions and suggestions with no button; the dataset page says
"computing" while they are on their way and counts them live."""

import zipfile

import pytest

from curator.models import Face
from tests.browser.conftest import logged_in_pages
from training.models import ModelVersion, Prediction


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


@pytest.mark.browser
@pytest.mark.worker
def test_imported_faces_get_predictions_and_suggestions_without_a_button(
    small_page, alice, dataset, fixture_faces, tmp_path, start_worker
):
    version = ModelVersion.objects.create(
        dataset=dataset, number=1, architecture="pretrained", artifact="", classes=["female", "male"], is_active=True
    )
    start_worker(queues="import,align,embed,predict", concurrency=2)
    archive = tmp_path / "new.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # no folder names: the faces come unlabelled
        for photo in sorted((fixture_faces / "lfw").glob("*/*.jpg"))[:4]:
            zf.write(photo, photo.name)

    page = small_page(alice)
    page.goto(f"/datasets/{dataset.pk}/import/")
    page.set_input_files("#id_files", str(archive))
    page.click("button:has-text('Upload and align')")
    page.wait_for_url("**/imports/*/")

    page.goto(f"/datasets/{dataset.pk}/")
    # While the photos are aligned, described and predicted, the page says so, and follows live.
    page.wait_for_selector("#predictions-progress")
    page.evaluate("window.notReloaded = true")
    page.wait_for_function(
        "() => { const p = document.getElementById('predictions-progress');"
        " return p && !document.getElementById('predictions-computing')"
        " && document.getElementById('predictions-done').textContent.trim() === '4'; }",
        timeout=180_000,
    )
    assert page.evaluate("window.notReloaded") is True
    assert "predictions for 4 of 4 faces" in page.inner_text("#predictions-progress")
    assert Prediction.objects.filter(model_version=version).count() == Face.objects.filter(dataset=dataset).count() == 4

    # The review page offers them as suggestions.
    page.goto(f"/review/{dataset.pk}/")
    assert "4 unlabelled faces have a suggested label waiting" in page.inner_text(f"#pretrained-{version.pk}")
