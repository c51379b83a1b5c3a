"""One colour per class everywhere (issue 20), as Chromium draws it at 1366x768: a female face is
the same orange and a male face the same blue in the grid, on the face page, in the review queue,
in the map's legend and points, whatever the page."""

import pytest

from tests.browser.conftest import logged_in_pages
from tests.browser.test_map import _computed_map
from tests.labeling.factories import make_faces, version_with_predictions

pytestmark = pytest.mark.browser

ORANGE, BLUE = "rgb(230, 159, 0)", "rgb(0, 114, 178)"  # curator.colours: classes 0 and 1


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


def test_female_and_male_have_one_colour_on_every_page(transactional_db, small_page, bob, dataset):
    faces = make_faces(dataset, 12, labels=["female", "male"])
    # The model says the opposite of every label: the review queue shows both colours side by side.
    version = version_with_predictions(
        dataset, faces, predict=lambda i, f: ("male" if f.label == "female" else "female", 0.9)
    )
    _computed_map(dataset, faces)
    female, male = faces[0], faces[1]
    page = small_page(bob)

    def background(selector: str) -> str:
        return page.locator(selector).first.evaluate("e => getComputedStyle(e).backgroundColor")

    page.goto(f"/labeling/{dataset.pk}/")
    assert background(f".tile[data-id='{female.pk}'] .badge") == ORANGE
    assert background(f".tile[data-id='{male.pk}'] .badge") == BLUE

    page.goto(f"/datasets/{dataset.pk}/faces/{female.pk}/")
    assert background("#face-label") == ORANGE

    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/")
    tile = page.locator(f"[data-id='{female.pk}']").first
    badges = tile.locator(".badge")
    assert badges.nth(0).evaluate("e => getComputedStyle(e).backgroundColor") == ORANGE  # label female
    assert badges.nth(1).evaluate("e => getComputedStyle(e).backgroundColor") == BLUE  # predicted male

    page.goto(f"/labeling/{dataset.pk}/map/")
    page.wait_for_function("() => window.embeddingMap && window.embeddingMap.ready()")
    swatches = page.evaluate(
        "Array.from(document.querySelectorAll('#map-legend li')).map(li =>"
        " [li.querySelector('.name').textContent, getComputedStyle(li.querySelector('.swatch')).backgroundColor])"
    )
    assert dict(swatches)["female"] == ORANGE and dict(swatches)["male"] == BLUE
    # Coloured by the version's predictions, the classes keep their colours.
    page.select_option("#map-colour", f"prediction:{version.pk}")
    page.wait_for_function("() => document.querySelector('#map-legend').innerText.includes('no prediction')")
    swatches = page.evaluate(
        "Array.from(document.querySelectorAll('#map-legend li')).map(li =>"
        " [li.querySelector('.name').textContent, getComputedStyle(li.querySelector('.swatch')).backgroundColor])"
    )
    assert dict(swatches)["female"] == ORANGE and dict(swatches)["male"] == BLUE
