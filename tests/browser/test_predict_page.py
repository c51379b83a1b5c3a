"""Predict a photo in the browser: choose it, see its face boxed with the label and probability,
the table of faces, and add it to the dataset with the model's label as a suggestion."""

import pytest

from curator.models import Face, SourceImage
from tests.training.predict_support import blank_photo, embedding_version, labelled_faces, lfw_photo


@pytest.mark.browser
def test_choose_photos_see_boxes_and_add_one_to_the_dataset(new_page, dataset, alice, tmp_path):
    labelled_faces(dataset)
    version = embedding_version(dataset, alice, predictions=False)
    empty = tmp_path / "no-face.png"
    empty.write_bytes(blank_photo())
    page = new_page(alice)
    page.goto("/predict/")
    assert page.locator("#model-version").input_value() == str(version.pk)
    page.set_input_files("#file-input", [str(lfw_photo("female", 1)), str(empty)])

    face_card = page.locator(".result", has_text=lfw_photo("female", 1).name)
    face_card.locator(".pbox").wait_for(state="visible", timeout=60_000)
    box = face_card.locator(".pbox").bounding_box()
    photo = face_card.locator("img.photo").bounding_box()
    # The box sits inside the photo, around its middle (LFW faces are centred).
    assert photo["x"] < box["x"] < box["x"] + box["width"] < photo["x"] + photo["width"]
    assert 0.2 * photo["width"] < box["width"] < 0.8 * photo["width"]
    label = face_card.locator(".pbox").get_attribute("data-label")
    assert label in ("female", "male")
    assert label in face_card.locator(".pbox .plabel").inner_text()
    rows = face_card.locator("tbody tr")
    assert rows.count() == 1 and label in rows.first.inner_text() and "%" in rows.first.inner_text()
    assert "1 face · model v1" in face_card.locator(".summary").inner_text()

    empty_card = page.locator(".result", has_text="no-face.png")
    empty_card.locator("tbody tr").wait_for()
    assert "No face found" in empty_card.inner_text()
    assert empty_card.locator(".pbox").count() == 0

    face_card.locator(".add-button").click()
    face_card.locator(".add-status a").wait_for()
    assert "suggestions, not as labels" in face_card.locator(".add-status").inner_text()
    image = SourceImage.objects.get(dataset=dataset, original_name__startswith="predicted/")
    face = Face.objects.get(image=image)
    assert face.suggested_label == label and face.label == ""


@pytest.mark.browser
def test_an_annotator_predicts_but_has_no_add_button(new_page, dataset, alice, bob):
    labelled_faces(dataset)
    embedding_version(dataset, alice, predictions=False)
    page = new_page(bob)
    page.goto("/predict/")
    page.set_input_files("#file-input", str(lfw_photo("male", 0)))
    page.locator(".result .pbox").wait_for(state="visible", timeout=60_000)
    assert page.locator(".result .add-button").is_hidden()


@pytest.mark.browser
def test_a_file_that_is_not_an_image_shows_the_servers_reason(new_page, dataset, alice, tmp_path):
    labelled_faces(dataset)
    embedding_version(dataset, alice, predictions=False)
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"this is a text file with a .jpg name")
    page = new_page(alice)
    page.goto("/predict/")
    page.set_input_files("#file-input", str(fake))
    error = page.locator(".result .result-error")
    error.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('.result .result-error').textContent.length > 0")
    assert "plain text" in error.inner_text()
