"""Face page parity with the grid (issue 20), in Chromium at 1366x768: the grid's keys work on
one face (class keys, u, x, n, z, ← →), "Not a face" is a button there, and + zooms in on the
face, not the photo's centre."""

import re

import pytest

from curator.models import Face
from tests.browser.conftest import logged_in_pages
from tests.labeling.factories import make_faces

pytestmark = pytest.mark.browser


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


def test_keys_not_a_face_and_zoom_on_the_face(transactional_db, small_page, bob, dataset):
    faces = make_faces(dataset, 9, labels=["female", "male", "female"], per_image=3)
    females = [f.pk for f in faces if f.label == "female"]
    face = Face.objects.get(pk=females[1])
    page = small_page(bob)
    page.goto(f"/datasets/{dataset.pk}/faces/{face.pk}/?label=female")
    assert page.inner_text("#face-position") == f"2 of {len(females)} matching"

    # + zooms in on the face: its box's centre is the view's centre (or as near as the photo allows).
    photo = page.locator("#photo")
    page.keyboard.press("+")
    assert photo.get_attribute("data-zoom") == "2.00"
    x, y, w, h = (float(v) for v in photo.get_attribute("viewBox").split())
    cx, cy = (face.box_left + face.box_right) / 2, (face.box_top + face.box_bottom) / 2
    assert x <= cx <= x + w and y <= cy <= y + h
    width, height = face.image.width, face.image.height
    expected_x = min(max(0, cx - w / 2), width - w)
    expected_y = min(max(0, cy - h / 2), height - h)
    assert abs(x - expected_x) < 1 and abs(y - expected_y) < 1

    # A class key labels the face (m: male), z takes it back.
    with page.expect_navigation():
        page.keyboard.press("m")
    assert page.inner_text("#face-label") == "male" and Face.objects.get(pk=face.pk).label == "male"
    with page.expect_navigation():
        page.keyboard.press("z")
    assert Face.objects.get(pk=face.pk).label == "female"
    # u toggles unsure.
    with page.expect_navigation():
        page.keyboard.press("u")
    assert Face.objects.get(pk=face.pk).is_unsure
    # n: not a face, as in the grid; then the button is gone (the face is marked).
    with page.expect_navigation():
        page.keyboard.press("n")
    marked = Face.objects.get(pk=face.pk)
    assert marked.is_excluded and marked.exclusion_reason == "not a face"
    assert page.locator("#not-a-face").count() == 0
    with page.expect_navigation():
        page.keyboard.press("z")
    assert not Face.objects.get(pk=face.pk).is_excluded
    # The button does the same as n.
    with page.expect_navigation():
        page.click("#not-a-face")
    assert Face.objects.get(pk=face.pk).exclusion_reason == "not a face"

    # ← and → walk the filter.
    with page.expect_navigation():
        page.keyboard.press("ArrowRight")
    assert re.search(rf"/faces/{females[2]}/\?label=female$", page.url)
    with page.expect_navigation():
        page.keyboard.press("ArrowLeft")
    assert re.search(rf"/faces/{females[1]}/\?label=female$", page.url)
    # The `?` overlay lists the face page's keys.
    page.keyboard.press("?")
    overlay = page.locator(".keymap")
    overlay.wait_for(state="visible")
    text = overlay.inner_text()
    assert "not a face" in text and "label female" in text and "zoom in on the face" in text
