"""The alignment job page updates itself while workers report, and stops asking once done."""

import pytest
from django.utils import timezone

from curator.models import AlignmentJob


@pytest.mark.browser
def test_progress_bar_moves_without_reloading_and_stops_when_done(new_page, alice, dataset):
    job = AlignmentJob.objects.create(
        dataset=dataset, total=40, status="running", started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    page = new_page(alice)
    page.goto(f"/datasets/{dataset.pk}/jobs/{job.pk}/")
    assert page.inner_text("#job-done") == "0 / 40"
    page.evaluate("window.notReloaded = true")  # gone if the page were reloaded

    AlignmentJob.objects.filter(pk=job.pk).update(done=25, faces=27, no_face=2, heartbeat_at=timezone.now())
    page.wait_for_function("() => document.querySelector('#job-done').textContent.trim() === '25 / 40'")
    assert page.inner_text("#job-faces") == "27" and page.inner_text("#job-no-face") == "2"
    assert page.get_attribute(".progress", "aria-valuenow") == "25"

    AlignmentJob.objects.filter(pk=job.pk).update(
        done=40, faces=43, status="done", finished_at=timezone.now(), heartbeat_at=timezone.now()
    )
    page.wait_for_function("() => document.querySelector('#job-status').textContent.trim() === 'Done'")
    assert page.evaluate("window.notReloaded") is True
    assert page.get_attribute("#job-progress", "hx-get") is None  # polling stopped

    # No more requests once finished: a later change is not fetched.
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.wait_for_timeout(2500)
    assert not [url for url in requests if "/progress/" in url]
