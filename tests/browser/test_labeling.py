"""Labeling in a real Chromium: ten faces by keyboard alone, undo, a bulk relabel of a filtered
selection and its revert (with a conflict shown), and the stale-save message a second session
gets when someone else changed the face first."""

import re

import pytest
from django.contrib.auth.models import User

from curator.models import Face
from labeling import services
from labeling.models import BulkAction
from tests.browser.conftest import logged_in_pages
from tests.labeling.factories import make_faces

pytestmark = pytest.mark.browser


@pytest.fixture
def logged_in(browser, live_server):
    """logged_in(username) -> a Playwright page of that user, in its own browser context, under
    the site's Content-Security-Policy (the test fails when the browser refused anything)."""
    opener = logged_in_pages(browser, live_server, {"width": 1400, "height": 1000})
    open_page = next(opener)
    yield lambda username: open_page(User.objects.get(username=username))
    next(opener, None)


def wait_idle(page):
    """Until no tile is waiting for the server."""
    page.wait_for_function("() => document.querySelectorAll('.tile.saving').length === 0")


def test_label_ten_faces_by_keyboard_and_undo_one(transactional_db, live_server, browser, logged_in, bob, dataset):
    faces = make_faces(dataset, 14)
    page = logged_in("bob")
    page.goto(f"{live_server.url}/labeling/{dataset.pk}/?label=unlabelled")
    page.wait_for_selector(".tile.focused")
    assert page.locator(".tile").count() == 14
    keys = "fmfmffmmfm"
    for key in keys:
        page.keyboard.press(key)
    wait_idle(page)
    page.wait_for_function("() => document.getElementById('status').textContent.includes('1 face changed')")
    labels = [Face.objects.get(pk=f.pk).label for f in faces[:10]]
    assert labels == ["female" if k == "f" else "male" for k in keys]
    assert not Face.objects.filter(pk__in=[f.pk for f in faces[10:]]).exclude(label="").exists()
    assert Face.objects.filter(label_origin="human").count() == 10
    # The focus moved on after each label: the eleventh face is focused now.
    assert page.locator(".tile.focused").get_attribute("data-id") == str(faces[10].pk)
    assert page.locator(f'.tile[data-id="{faces[3].pk}"] .badge').inner_text() == "male"

    page.keyboard.press("z")
    page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Undid')")
    assert Face.objects.get(pk=faces[9].pk).label == ""
    assert page.locator(f'.tile[data-id="{faces[9].pk}"] .badge').inner_text() == "unlabelled"
    assert Face.objects.exclude(label="").count() == 9
    # u and x work on the focused face (undo put the focus back on face 10).
    page.keyboard.press("u")
    wait_idle(page)
    page.wait_for_function(
        f"() => document.querySelector('.tile[data-id=\"{faces[9].pk}\"]').classList.contains('unsure')"
    )
    assert Face.objects.get(pk=faces[9].pk).is_unsure
    # The detail panel follows the focus and shows that face's history.
    page.wait_for_selector(f'.face-detail[data-face="{faces[10].pk}"]')
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f'.face-detail[data-face="{faces[9].pk}"]')
    assert "Unsure: false → true" in page.locator("#detail").inner_text()


def test_bulk_relabel_a_filtered_selection_then_revert_it_with_a_conflict(
    transactional_db, live_server, browser, logged_in, alice, bob, dataset
):
    faces = make_faces(dataset, 30, labels=["female", "male", "male"])
    males = [f.pk for f in faces if f.label == "male"]
    page = logged_in("alice")
    page.on("dialog", lambda dialog: dialog.accept())
    # The bulk panel is folded away until asked for (`panels=open` in the URL, or the toggle).
    page.goto(f"{live_server.url}/labeling/{dataset.pk}/?label=male&panels=open")
    page.wait_for_selector(".tile.focused")
    page.click("#select-all-matching")
    assert page.locator("#selcount").inner_text() == f"all {len(males)} matching selected"
    page.select_option("#bulk-label", "female")
    page.click("button[data-bulk=label]")
    # 20 of 30 faces: the preview asks for the second confirmation (tests/browser/test_safe_actions.py).
    page.check("#bulk-confirm-large")
    page.click("#bulk-confirm")
    page.wait_for_selector(".msg-success")
    assert f"{len(males)} faces changed" in page.locator(".messages").inner_text()
    assert set(Face.objects.filter(pk__in=males).values_list("label", flat=True)) == {"female"}
    action = BulkAction.objects.get(kind="label")
    # Someone changes one of those faces afterwards: the revert must keep that change.
    services.faces_update(user=bob, dataset=dataset, faces=[males[0]], changes={"label": "male"})

    page.goto(f"{live_server.url}/labeling/{dataset.pk}/history/")
    page.click(f"#action-{action.pk} a.button")
    assert "Conflict: 1 face changed again" in page.locator("#conflicts").inner_text()
    page.click("#confirm-revert")
    page.wait_for_selector(".messages")
    assert f"{len(males) - 1} face(s) restored" in page.locator(".messages").inner_text()
    assert set(Face.objects.filter(pk__in=males).values_list("label", flat=True)) == {"male"}
    assert "reverted by" in page.locator(f"#action-{action.pk}").inner_text()


def test_shift_click_range_and_bulk_exclude(transactional_db, live_server, browser, logged_in, bob, dataset):
    faces = make_faces(dataset, 12, labels=["female"])
    page = logged_in("bob")
    page.goto(f"{live_server.url}/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    page.click(f'.tile[data-id="{faces[2].pk}"]', modifiers=["Control"])
    page.click(f'.tile[data-id="{faces[6].pk}"]', modifiers=["Shift"])
    assert page.locator("#selcount").inner_text() == "5 selected"
    page.click("button[data-bulk=exclude]")
    page.wait_for_function("() => document.getElementById('selcount').textContent === '0 selected'")
    assert list(Face.objects.filter(is_excluded=True).order_by("id").values_list("id", flat=True)) == [
        f.pk for f in faces[2:7]
    ]
    assert page.locator(".tile.excluded").count() == 5


def test_second_session_sees_the_conflict_message(
    transactional_db, live_server, browser, logged_in, alice, bob, dataset
):
    faces = make_faces(dataset, 5)
    alices = logged_in("alice")
    bobs = logged_in("bob")
    for page in (alices, bobs):
        page.goto(f"{live_server.url}/labeling/{dataset.pk}/")
        page.wait_for_selector(".tile.focused")
    bobs.keyboard.press("m")
    wait_idle(bobs)
    bobs.wait_for_function("() => document.getElementById('status').textContent.includes('1 face changed')")
    assert Face.objects.get(pk=faces[0].pk).label == "male"

    alices.keyboard.press("f")  # alice still sees face 1 as unlabelled, version 1
    alices.wait_for_selector("#status.error")
    message = alices.locator("#status").inner_text()
    assert "Not saved: someone changed this face since you loaded the page" in message
    assert "now male" in message
    tile = alices.locator(f'.tile[data-id="{faces[0].pk}"]')
    assert tile.locator(".badge").inner_text() == "male"  # the current value is shown
    assert "conflict" in tile.get_attribute("class")
    assert Face.objects.get(pk=faces[0].pk).label == "male"
    # Now that alice's page shows the current version, a deliberate retry goes through.
    alices.click(f'.tile[data-id="{faces[0].pk}"]')
    alices.keyboard.press("f")
    wait_idle(alices)
    alices.wait_for_function("() => document.getElementById('status').textContent.includes('1 face changed')")
    assert Face.objects.get(pk=faces[0].pk).label == "female"


def test_enter_goes_to_the_next_page_keeping_the_filter(
    transactional_db, live_server, browser, logged_in, bob, dataset
):
    make_faces(dataset, 70, labels=["male"])
    page = logged_in("bob")
    page.goto(f"{live_server.url}/labeling/{dataset.pk}/?label=male&per_page=60")
    page.wait_for_selector(".tile.focused")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"label=male&per_page=60&page=2"))
    assert page.locator(".tile").count() == 10
