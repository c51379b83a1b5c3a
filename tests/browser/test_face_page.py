"""The face page in a real Chromium: opened from the grid's side panel with the grid's filter,
zoom, the photo's other faces, history and predictions, previous/next within the filter and a
relabel by mouse."""

import re

import pytest

from curator.models import Face
from labeling import services
from tests.labeling.factories import make_faces, version_with_predictions

pytestmark = pytest.mark.browser


def test_face_page_from_the_grid_zoom_siblings_history_predictions_prev_next_relabel(
    transactional_db, new_page, alice, bob, dataset
):
    faces = make_faces(dataset, 9, labels=["male", "female", "male"], per_image=3)
    version_with_predictions(dataset, faces, number=1)
    services.faces_update(user=alice, dataset=dataset, faces=[faces[2].pk], changes={"is_unsure": True})
    males = [f.pk for f in faces if f.label == "male"]  # ids in the grid's default order
    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/?label=male")
    page.wait_for_selector(".tile.focused")
    page.click(f'.tile[data-id="{faces[2].pk}"]')
    page.wait_for_selector(f'.face-detail[data-face="{faces[2].pk}"]')
    page.click("#open-face-page")
    page.wait_for_url(re.compile(rf"/datasets/{dataset.pk}/faces/{faces[2].pk}/\?label=male$"))

    # Zoom: buttons, a click on the photo and the wheel change the view; "whole photo" resets it.
    photo = page.locator("#photo")
    assert photo.get_attribute("data-zoom") == "1.00"
    page.click("#zoom-in")
    assert photo.get_attribute("data-zoom") == "2.00"
    page.click("#zoom-reset")
    box = photo.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert photo.get_attribute("data-zoom") == "2.00"
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 3)
    page.mouse.wheel(0, -100)
    page.wait_for_function("() => Number(document.getElementById('photo').dataset.zoom) > 2.4")
    page.click("#zoom-reset")
    assert photo.get_attribute("viewBox") == "0 0 200 200"

    # The photo's faces (this one and the two others), history and predictions.
    assert page.locator("#photo-faces .photo-face").count() == 3
    assert page.locator("#photo polygon.box").count() == 3
    assert "alice · unsure: no → yes" in page.locator("#face-history").inner_text()
    predictions = page.locator("#face-predictions").inner_text()
    assert "v1" in predictions and re.search(r"(female|male) \(0\.\d\d\)", predictions)

    # Previous / next within the filter "label=male".
    position = males.index(faces[2].pk)
    assert page.locator("#face-position").inner_text() == f"{position + 1} of {len(males)} matching"
    page.click("#next-face")
    page.wait_for_url(re.compile(rf"/faces/{males[position + 1]}/\?label=male$"))
    page.click("#prev-face")
    page.wait_for_url(re.compile(rf"/faces/{faces[2].pk}/\?label=male$"))

    # Relabel by mouse: through the API, with the face's version; the page shows the new history.
    page.click("#relabel button:has-text('female')")
    page.wait_for_selector("#face-history li:has-text('bob · label: male → female')")
    assert Face.objects.get(pk=faces[2].pk).label == "female"
    # Now out of the filter: the page says so and still offers its neighbours in the filter.
    assert "no longer matches the filter" in page.locator("#face-nav").inner_text()

    # Another face of the photo, by its thumbnail.
    sibling = faces[0]
    page.click(f'#photo-faces a[data-face="{sibling.pk}"]')
    page.wait_for_url(re.compile(rf"/faces/{sibling.pk}/"))
    assert page.locator("#photo polygon.box.current").count() == 1


def test_stale_relabel_on_the_face_page_says_so(transactional_db, new_page, alice, bob, dataset):
    face = make_faces(dataset, 1, labels=["male"])[0]
    page = new_page(bob)
    page.goto(f"/datasets/{dataset.pk}/faces/{face.pk}/")
    services.faces_update(user=alice, dataset=dataset, faces=[face.pk], changes={"label": "female"})
    page.click("#relabel button:has-text('mark unsure')")
    page.wait_for_selector("#face-status.error")
    assert "Not saved: someone changed this face" in page.locator("#face-status").inner_text()
    assert not Face.objects.get(pk=face.pk).is_unsure
