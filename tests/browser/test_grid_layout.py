"""The dense labeling grid in a real Chromium at 1366x768: six rows of faces without scrolling,
the filter and bulk panels folded away with their state (and the tile size) in the URL, the
full-screen photo of the focused face, and "not a face" from the grid."""

import pytest

from curator.models import Face
from labeling.models import BulkAction
from tests.browser.conftest import logged_in_pages
from tests.labeling.factories import make_faces

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
def laptop_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, LAPTOP)


def visible_rows(page) -> int:
    """Rows of tiles whose whole tile is inside the window without scrolling."""
    return page.evaluate(
        """() => {
          const tops = new Set();
          for (const t of document.querySelectorAll('#grid .tile')) {
            const r = t.getBoundingClientRect();
            if (r.top >= 0 && r.bottom <= window.innerHeight && r.width > 0) tops.add(Math.round(r.top));
          }
          return tops.size;
        }"""
    )


def test_six_rows_fit_a_1366x768_window_and_the_panels_fold(laptop_page, dataset, bob):
    make_faces(dataset, 120, labels=["female", "male", ""])
    page = laptop_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    assert page.evaluate("window.scrollY") == 0
    assert page.locator("#panels").is_hidden()
    assert visible_rows(page) >= 6

    # Open the panels: the state goes into the URL and survives a reload.
    page.click("#panels-toggle")
    assert page.locator("#panels").is_visible() and page.locator("#bulkbar").is_visible()
    assert "panels=open" in page.url
    page.reload()
    page.wait_for_selector(".tile.focused")
    assert page.locator("#panels").is_visible()
    # The key folds them again (the same toggle), and that survives a reload too.
    page.keyboard.press("\\")
    assert page.locator("#panels").is_hidden()
    assert "panels" not in page.url
    page.reload()
    page.wait_for_selector(".tile.focused")
    assert page.locator("#panels").is_hidden()
    assert visible_rows(page) >= 6


def test_tile_size_keys_and_buttons_are_kept_in_the_url(laptop_page, dataset, bob):
    make_faces(dataset, 60)
    page = laptop_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    width = page.locator(".tile").first.bounding_box()["width"]
    page.keyboard.press("+")
    assert "size=112" in page.url
    bigger = page.locator(".tile").first.bounding_box()["width"]
    assert bigger > width
    page.reload()
    page.wait_for_selector(".tile.focused")
    assert page.locator(".tile").first.bounding_box()["width"] == pytest.approx(bigger, abs=1)
    page.click("button[data-size='-1']")
    page.click("button[data-size='-1']")
    assert "size=80" in page.url
    assert page.locator(".tile").first.bounding_box()["width"] < width


def test_full_screen_photo_of_the_focused_face(laptop_page, dataset, bob):
    faces = make_faces(dataset, 5)
    page = laptop_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("p")
    page.wait_for_selector("#photo-view:not([hidden]) svg.photo image")
    assert page.get_attribute("#photo-view", "data-face") == str(faces[1].pk)
    assert page.locator("#photo-view svg.photo polygon.box.current").count() == 1
    box = page.locator("#photo-view svg.photo").bounding_box()
    assert box["height"] > 500  # full screen, not the panel's thumbnail
    page.keyboard.press("x")  # keys wait while the photo is open
    page.keyboard.press("Escape")
    assert page.locator("#photo-view").is_hidden()
    assert not Face.objects.filter(is_excluded=True).exists()
    page.click("#photo-button")
    page.wait_for_selector("#photo-view:not([hidden])")
    page.click("#photo-view-close")
    assert page.locator("#photo-view").is_hidden()


def test_not_a_face_from_the_grid_by_key_and_from_the_detail_panel(laptop_page, dataset, bob):
    faces = make_faces(dataset, 6, labels=["male"])
    page = laptop_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    page.keyboard.press("n")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('Not a face: 1 face')")
    first = Face.objects.get(pk=faces[0].pk)
    assert (first.is_excluded, first.exclusion_reason, first.label) == (True, "not a face", "male")
    assert "excluded" in page.get_attribute(f".tile[data-id='{faces[0].pk}']", "class")
    # The focus moved on; the detail panel's button marks the face it shows.
    page.wait_for_selector(f"#detail .face-detail[data-face='{faces[1].pk}'] [data-not-face]")
    page.click(f"#detail [data-not-face='{faces[1].pk}']")
    page.wait_for_selector(f".tile.excluded[data-id='{faces[1].pk}']")
    assert Face.objects.get(pk=faces[1].pk).exclusion_reason == "not a face"
    assert BulkAction.objects.filter(kind="not_a_face", user=bob).count() == 2
    # `z` takes the last one back.
    page.keyboard.press("z")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Undid')")
    assert not Face.objects.get(pk=faces[1].pk).is_excluded
