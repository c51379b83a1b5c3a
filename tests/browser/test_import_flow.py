"""The first thing a new user does: create a dataset, drop in a zip, watch the import report fill
up live while the workers import and align it, and see the labelled faces."""

import zipfile

import pytest

from curator.models import Dataset, Face


@pytest.mark.browser
@pytest.mark.worker
def test_create_dataset_upload_zip_watch_progress_see_faces(new_page, alice, fixture_faces, tmp_path, start_worker):
    start_worker(queues="align,import", concurrency=2)
    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for gender in ("female", "male"):
            for photo in sorted((fixture_faces / "lfw" / gender).glob("*.jpg"))[:3]:
                zf.write(photo, f"{gender}/{photo.name}")
        zf.writestr("female/readme.jpg", b"<html>not a photo</html>")

    page = new_page(alice)
    page.click("text=New dataset")
    page.fill("#id_name", "Browser set")
    page.click("button:has-text('Create dataset')")
    page.set_input_files("#id_files", str(archive))
    page.click("button:has-text('Upload and align')")

    # The upload returns at once to the import report, which follows the import task live (htmx
    # swaps the report in place, no reload): the counts grow, the bad file shows up, the
    # alignment job appears and counts up to the end.
    page.wait_for_url("**/imports/*/")
    page.evaluate("window.notReloaded = true")
    page.wait_for_function("() => document.querySelector('#imported').textContent.trim() === '6'", timeout=60_000)
    page.wait_for_selector("#issues")
    assert "HTML/XML text, not an image" in page.inner_text("#issues")
    page.wait_for_function(
        "() => document.querySelector('.batch-job .job-count')?.textContent.trim() === '6/6'", timeout=90_000
    )
    assert page.evaluate("window.notReloaded") is True
    page.click("a:has-text('job')")
    page.wait_for_function("() => document.querySelector('#job-status').textContent.trim() === 'Done'", timeout=90_000)
    assert page.inner_text("#job-done") == "6 / 6"
    assert int(page.inner_text("#job-faces")) >= 6

    # The click starts a navigation; read the badges only once the dataset page has replaced the job's.
    page.click("text=See the aligned faces")
    page.wait_for_url(f"**/datasets/{Dataset.objects.get(name='Browser set').pk}/")
    page.wait_for_selector(".faces .badge")
    badges = page.locator(".faces .badge").all_inner_texts()
    assert sorted(badges)[:3] == ["female"] * 3 and badges.count("male") >= 3
    dataset = Dataset.objects.get(name="Browser set")
    assert Face.objects.filter(dataset=dataset).exclude(label="").count() == 6
