"""One key scheme on every page, in a real Chromium: `?` opens the key map of the page (exactly
the keys that work there), `a` accepts a model's suggestion wherever there is one (the grid's
select-page is shift+a / ctrl+a), and the least-sure queue shows each suggestion with a
one-key and one-click accept."""

import pytest

from curator.models import Face
from review import selectors as queues
from tests.labeling.factories import make_faces, version_with_predictions
from training.models import Prediction

pytestmark = pytest.mark.browser


def keymap_rows(page) -> list[str]:
    page.keyboard.press("?")
    page.wait_for_selector("#keymap:not([hidden])")
    return page.locator("#keymap tr").all_inner_texts()


def close_keymap(page):
    page.keyboard.press("Escape")
    page.wait_for_selector("#keymap", state="hidden")


def test_grid_key_map_lists_its_keys_and_a_no_longer_selects_the_page(new_page, dataset, bob):
    faces = make_faces(dataset, 8)
    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.wait_for_selector(".tile.focused")
    rows = [r.replace("\t", " ") for r in keymap_rows(page)]
    assert "f label female" in rows and "m label male" in rows
    assert "n not a face: exclude it as a false detection" in rows
    assert "shift+a select every face on the page" in rows
    assert "p full-screen photo of the focused face (Esc closes)" in rows
    assert not any(r.startswith("a ") for r in rows)  # no suggestion to accept in the grid
    assert not any("info" in r for r in rows)
    # Keys wait while the map is open; Esc closes it.
    page.keyboard.press("f")
    close_keymap(page)
    assert not Face.objects.exclude(label="").exists()

    page.keyboard.press("a")
    assert page.inner_text("#selcount") == "0 selected"
    page.keyboard.press("Shift+A")
    assert page.inner_text("#selcount") == f"{len(faces)} selected"
    page.keyboard.press("Escape")
    page.keyboard.press("Control+a")
    assert page.inner_text("#selcount") == f"{len(faces)} selected"
    # The button in the header opens the same map.
    page.click(".keys-button")
    page.wait_for_selector("#keymap:not([hidden])")


def test_review_pages_map_a_to_accept(new_page, dataset, bob):
    faces = make_faces(dataset, 10, labels=["female", "", "male", ""])
    version = version_with_predictions(dataset, faces)
    page = new_page(bob)
    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/")
    page.wait_for_selector(".tile.focused")
    rows = [r.replace("\t", " ") for r in keymap_rows(page)]
    assert "a accept the model's suggestion as the label" in rows
    assert "f label female" in rows
    assert not any(r.startswith(("shift+a", "n ")) for r in rows)
    close_keymap(page)
    # The hint on the page comes from the same registry.
    assert "accept the model's suggestion as the label" in page.inner_text("#keyhelp")

    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/")
    rows = [r.replace("\t", " ") for r in keymap_rows(page)]
    assert "a accept the model's suggestion as the label" in rows
    assert "c confirm the current label (the model is wrong)" in rows


def test_a_training_page_has_the_key_map_too(new_page, dataset, alice):
    page = new_page(alice)
    page.goto(f"/training/datasets/{dataset.pk}/")
    rows = [r.replace("\t", " ") for r in keymap_rows(page)]
    assert rows == ["Esc close this key map", "? this key map"]
    close_keymap(page)


def test_least_sure_queue_shows_the_suggestion_and_accepts_it_with_a_or_a_click(new_page, dataset, bob):
    faces = make_faces(dataset, 8)  # all unlabelled
    version = version_with_predictions(dataset, faces)
    queue = [p.face_id for p in queues.active_learning_queue(model_version=version)]
    first = Prediction.objects.get(face_id=queue[0], model_version=version)
    second = Prediction.objects.get(face_id=queue[1], model_version=version)

    page = new_page(bob)
    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/unlabelled/")
    page.wait_for_selector(f".tile[data-id='{queue[0]}'].focused")
    tile = page.locator(f".tile[data-id='{queue[0]}']")
    assert tile.locator(".suggestion").inner_text() == f"{first.predicted_label} {first.confidence:.2f}"
    assert "a accept the model's suggestion as the label" in [r.replace("\t", " ") for r in keymap_rows(page)]
    close_keymap(page)

    page.keyboard.press("a")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('1 face changed')")
    assert Face.objects.get(pk=queue[0]).label == first.predicted_label
    assert tile.locator(".badge").inner_text() == first.predicted_label
    page.wait_for_selector(f".tile[data-id='{queue[1]}'].focused")  # moved on

    page.click(f".tile[data-id='{queue[2]}'] [data-accept]")
    page.wait_for_function(f"() => document.querySelector(\".tile[data-id='{queue[2]}']\").dataset.label !== ''")
    third = Prediction.objects.get(face_id=queue[2], model_version=version)
    assert Face.objects.get(pk=queue[2]).label == third.predicted_label
    assert Face.objects.get(pk=queue[1]).label == ""  # untouched
    assert second.face_id == queue[1]
