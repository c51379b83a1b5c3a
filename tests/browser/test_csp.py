"""Every page works under the strict Content-Security-Policy, in Chromium: the scripts moved to
static files run, the plots keep their colours (presentation attributes, no inline styles), the
progress bars take their width from data-width, and the browser refuses nothing (the new_page
fixture fails the test on any refusal)."""

import pytest

from curator.models import AlignmentJob
from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version

pytestmark = pytest.mark.browser


def test_pages_run_their_scripts_and_keep_their_looks_under_the_policy(new_page, alice, admin_user, dataset):
    make_faces(dataset, 40, labels=["female", "male"])
    version = build_version(dataset)
    job = AlignmentJob.objects.create(dataset=dataset, status="running", total=8, done=2)
    page = new_page(alice)

    page.goto(f"/training/versions/{version.pk}/")
    cell = page.locator("#plot-confusion #cell-0-0 path").first
    # Drawn with matplotlib's colours (a shade of blue), not the black an SVG without its styles fills with.
    assert cell.evaluate("p => getComputedStyle(p).fill") not in ("rgb(0, 0, 0)", "")

    page.goto(f"/labeling/{dataset.pk}/curate/")
    assert page.locator(".histograms svg").count() > 0

    page.goto(f"/datasets/{dataset.pk}/jobs/{job.pk}/")
    bar = page.locator(".progress > div[data-width]").first
    page.wait_for_function("b => b.style.width === '25%'", arg=bar.element_handle())

    page.goto("/account/token/")
    page.click("button[value=create]")
    page.focus("#new-token")
    assert page.evaluate("() => window.getSelection().toString() || document.activeElement.selectionEnd") not in (0, "")

    page.goto("/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock")  # its start-up script, now a file, ran

    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")  # the grid's module script ran

    admin = new_page(admin_user)
    admin.goto(f"/admin/curator/dataset/{dataset.pk}/change/")
    admin.wait_for_selector("#memberships-group")
