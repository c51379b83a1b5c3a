"""More like this in a real Chromium: from the grid (the `s` key and the face panel's link) to
the nearest faces with their distances, and from a photo uploaded on the predict page to the
dataset's faces that look like it."""

import re

import numpy as np
import pytest

from curator.models import Face
from embeddings.descriptors import features_for_faces
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces
from tests.training.predict_support import embedding_version, labelled_faces, lfw_photo

pytestmark = pytest.mark.browser


def test_more_like_this_from_the_grid_shows_the_nearest_faces_with_distances(transactional_db, new_page, bob, dataset):
    faces = make_faces(dataset, 12, labels=["female", "male"])
    vectors = far_apart_vectors(12, seed=21)
    step = np.zeros(128, dtype=np.float32)
    step[5] = 0.1
    for n, i in enumerate((7, 3, 9), start=1):  # nearest to face 0: faces 7, 3, 9 at 0.1, 0.2, 0.3
        vectors[i] = vectors[0] + n * step
    descriptors_store(faces, vectors=vectors)

    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/")
    page.click(f'.tile[data-id="{faces[0].pk}"]')
    page.wait_for_selector(f'.face-detail[data-face="{faces[0].pk}"]')
    page.keyboard.press("s")
    page.wait_for_url(re.compile(rf"/labeling/{dataset.pk}/\?sort=distance&similar_to={faces[0].pk}$"))
    tiles = page.locator(".tile")
    ids = [int(i) for i in tiles.evaluate_all("els => els.map(e => e.dataset.id)")]
    # The face asked about first, at distance 0, then its nearest (issue 20: it was left out).
    assert ids[:4] == [faces[0].pk, faces[7].pk, faces[3].pk, faces[9].pk]
    assert [tiles.nth(k).locator(".distance").inner_text() for k in range(4)] == [
        "distance 0.000",
        "distance 0.100",
        "distance 0.200",
        "distance 0.300",
    ]
    assert f"most like face {faces[0].pk}" in page.content()

    # The face panel's link does the same from another face.
    page.click(f'.tile[data-id="{faces[3].pk}"]')
    page.wait_for_selector(f'.face-detail[data-face="{faces[3].pk}"]')
    page.click("#more-like-this")
    page.wait_for_url(re.compile(rf"similar_to={faces[3].pk}$"))
    first, second = page.locator(".tile").nth(0), page.locator(".tile").nth(1)
    assert int(first.get_attribute("data-id")) == faces[3].pk
    assert int(second.get_attribute("data-id")) in (faces[7].pk, faces[9].pk, faces[0].pk)
    assert second.locator(".distance").inner_text() == "distance 0.100"


def test_who_in_the_dataset_looks_like_an_uploaded_photo(transactional_db, new_page, alice, dataset):
    labelled_faces(dataset)
    features_for_faces(list(Face.objects.filter(dataset=dataset).values_list("pk", flat=True)), processes=1)
    embedding_version(dataset, alice, predictions=False)
    photo = lfw_photo("female", 1)
    same = Face.objects.get(dataset=dataset, image__original_name=photo.name)

    page = new_page(alice)
    page.goto("/predict/")
    page.set_input_files("#file-input", str(photo))
    card = page.locator(".result", has_text=photo.name)
    card.locator(".similar-face").first.wait_for(timeout=90_000)
    assert "Who in the dataset looks like this" in card.locator(".similar").inner_text()
    first = card.locator(".similar-face").first
    # The photo is in the dataset: its own face comes first, at almost no distance.
    assert int(first.get_attribute("data-id")) == same.pk
    assert float(first.locator(".distance").inner_text()) < 0.1
    assert card.locator(".similar-face").count() == 12
    distances = [float(t) for t in card.locator(".similar-face .distance").all_inner_texts()]
    assert distances == sorted(distances)
    first.click()
    page.wait_for_url(re.compile(rf"/labeling/{dataset.pk}/\?sort=distance&similar_to={same.pk}$"))
