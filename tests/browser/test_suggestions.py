"""Pre-labels by keyboard: an annotator opens a version's suggestions, accepts the first with `a`,
sees it leave the queue and the face get its label, labels the next one otherwise with a class key,
takes that back with `z`, and finds the grid showing suggestions apart from labels."""

import pytest

from curator.models import Face
from labeling.models import LabelEvent
from review import selectors as queues
from review.models import ReviewDecision
from tests.labeling.factories import make_faces, version_with_predictions
from training.models import Prediction


@pytest.mark.browser
def test_accept_a_suggestion_by_keyboard(new_page, dataset, bob):
    faces = make_faces(dataset, 12, labels=["female", "", "male", ""])
    version = version_with_predictions(dataset, faces)
    queue = [p.face_id for p in queues.suggestions_queue(model_version=version)]
    assert len(queue) == 6
    first = Prediction.objects.get(face_id=queue[0], model_version=version)
    second = Prediction.objects.get(face_id=queue[1], model_version=version)

    page = new_page(bob)
    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/suggestions/")
    assert "Ranking: suggestions, most confident first" in page.inner_text("#ranking")
    tiles = page.locator(".suggestion-tile")
    assert [int(t) for t in tiles.evaluate_all("ts => ts.map(t => t.dataset.id)")] == queue
    first_tile = page.locator(f".suggestion-tile[data-id='{queue[0]}']")
    assert (
        first_tile.locator(".suggestion").inner_text() == f"suggested: {first.predicted_label} {first.confidence:.2f}"
    )
    assert first_tile.locator(".badge").inner_text() == "unlabelled"
    page.wait_for_selector(f".suggestion-tile[data-id='{queue[0]}'].focused")
    # The detail panel shows the focused face with this version's suggestion.
    page.wait_for_selector(f"#detail .face-detail[data-face='{queue[0]}'] #suggested")

    page.keyboard.press("a")
    page.wait_for_selector(f".suggestion-tile[data-id='{queue[0]}']", state="detached")
    page.wait_for_selector(f".suggestion-tile[data-id='{queue[1]}'].focused")
    page.wait_for_function("() => document.getElementById('p-remaining').textContent === '5'")
    assert page.inner_text("#p-accepted") == "1"
    assert "accepted v1's suggestion" in page.inner_text("#status")
    face = Face.objects.get(pk=queue[0])
    assert face.label == first.predicted_label and face.label_origin == Face.LabelOrigin.HUMAN
    assert LabelEvent.objects.filter(face=face, field="label", new_value=first.predicted_label).exists()
    assert ReviewDecision.objects.get(face=face).decision == "accepted"

    # A class key gives the other label; `z` takes it back and the tile returns in place.
    other = "female" if second.predicted_label == "male" else "male"
    page.keyboard.press(other[0])
    page.wait_for_selector(f".suggestion-tile[data-id='{queue[1]}']", state="detached")
    assert Face.objects.get(pk=queue[1]).label == other
    page.keyboard.press("z")
    page.wait_for_selector(f".suggestion-tile[data-id='{queue[1]}'].focused")
    assert [int(t) for t in tiles.evaluate_all("ts => ts.map(t => t.dataset.id)")] == queue[1:]
    page.wait_for_function("() => document.getElementById('p-remaining').textContent === '5'")
    assert Face.objects.get(pk=queue[1]).label == ""

    # After a reload the accepted face is gone for good.
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert [int(t) for t in tiles.evaluate_all("ts => ts.map(t => t.dataset.id)")] == queue[1:]

    # The grid: the accepted face shows its label, the others their suggestion, styled apart.
    page.goto(f"/labeling/{dataset.pk}/?model={version.pk}")
    accepted = page.locator(f".tile[data-id='{queue[0]}']")
    assert accepted.locator(".badge").inner_text() == first.predicted_label
    assert accepted.locator(".suggestion").count() == 0
    waiting = page.locator(f".tile[data-id='{queue[1]}']")
    assert waiting.locator(".badge").inner_text() == "unlabelled"
    assert waiting.locator(".suggestion").inner_text() == f"suggested: {second.predicted_label} {second.confidence:.2f}"
    assert waiting.locator(".suggestion").evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"
