"""Review the faces a model disputes by keyboard alone: accept, confirm, exclude, mark unsure,
undo, and see the decided faces leave the queue."""

import pytest

from curator.models import Face
from labeling import services
from labeling.models import LabelEvent
from review import selectors as queues
from review.models import ReviewDecision
from tests.training.predict_support import embedding_version, labelled_faces
from training.models import Prediction


@pytest.mark.browser
def test_review_a_queue_by_keyboard(new_page, dataset, alice):
    faces = labelled_faces(dataset)
    version = embedding_version(dataset, alice)
    for face in faces[:5]:  # make sure there is something to dispute
        predicted = Prediction.objects.get(face=face, model_version=version).predicted_label
        services.faces_update(
            user=alice,
            dataset=dataset,
            faces=[face.pk],
            changes={"label": "male" if predicted == "female" else "female"},
        )
    queue = [p.face_id for p in queues.disagreement_queue(model_version=version)]
    assert len(queue) >= 5
    first_model_label = Prediction.objects.get(face_id=queue[0], model_version=version).predicted_label

    page = new_page(alice)
    page.goto(f"/review/{dataset.pk}/versions/{version.pk}/")
    assert "Ranking: model disagreement" in page.inner_text("#ranking")
    tiles = page.locator(".review-tile")
    assert [int(t) for t in tiles.evaluate_all("ts => ts.map(t => t.dataset.id)")][:5] == queue[:5]
    page.wait_for_selector(".review-tile.focused")
    assert tiles.nth(0).get_attribute("class").count("focused") == 1
    # The detail panel shows the focused face's photo and history.
    page.wait_for_selector(f"#detail .face-detail[data-face='{queue[0]}']")

    for key, decision in (("a", "accepted"), ("c", "confirmed"), ("x", "excluded"), ("u", "unsure")):
        index = ["a", "c", "x", "u"].index(key)
        page.keyboard.press(key)
        page.wait_for_selector(f".review-tile[data-id='{queue[index]}'].decided.d-{decision}")
        page.wait_for_selector(f".review-tile[data-id='{queue[index + 1]}'].focused")
    assert page.inner_text("#p-reviewed") == "4"
    assert page.inner_text("#p-changed") == "1"
    # Issue 20: after `a` the accepted face shows its new label at once (it showed the old one).
    accepted = page.locator(f".review-tile[data-id='{queue[0]}'] figcaption .badge").first
    assert accepted.inner_text() == first_model_label
    # And its detail panel, opened again, too.
    page.locator(f".review-tile[data-id='{queue[0]}']").click(modifiers=[])
    page.wait_for_function(
        f"() => document.querySelector(\"#detail .face-detail[data-face='{queue[0]}'] h3 .badge\")?.textContent"
        f" === '{first_model_label}'"
    )
    page.locator(f".review-tile[data-id='{queue[4]}']").click()
    page.wait_for_selector(f".review-tile[data-id='{queue[4]}'].focused")

    page.keyboard.press("z")  # takes back the "unsure"
    page.wait_for_function(
        f"() => !document.querySelector(\".review-tile[data-id='{queue[3]}']\").classList.contains('decided')"
    )
    assert page.inner_text("#p-reviewed") == "3"

    assert Face.objects.get(pk=queue[0]).label == first_model_label
    assert Face.objects.get(pk=queue[2]).is_excluded
    assert not Face.objects.get(pk=queue[3]).is_unsure
    assert sorted(ReviewDecision.objects.values_list("decision", flat=True)) == ["accepted", "confirmed", "excluded"]
    assert LabelEvent.objects.filter(face_id=queue[0], field="label", action__kind="review").exists()

    with page.expect_navigation():
        page.keyboard.press("Enter")  # the next faces: the decided ones have left the queue
    remaining = [int(t) for t in page.locator(".review-tile").evaluate_all("ts => ts.map(t => t.dataset.id)")]
    assert queue[0] not in remaining and queue[1] not in remaining and queue[2] not in remaining
    assert remaining[0] == queue[3]
