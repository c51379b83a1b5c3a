"""The embedding map in a real Chromium: it is computed (here by the task's own function, no
worker), drawn, hovered (the face and its label), recoloured, and a box dragged over one cluster
opens exactly those faces in the grid."""

import re

import numpy as np
import pytest

from embeddings import maps
from embeddings.models import DatasetMap
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces

pytestmark = pytest.mark.browser


def _computed_map(dataset, faces, groups: int = 3):
    """Descriptors in `groups` tight clusters (faces i % groups together), and their map."""
    centres = far_apart_vectors(groups, seed=11)
    rng = np.random.default_rng(12)
    vectors = centres[[i % groups for i in range(len(faces))]] + rng.normal(scale=0.01, size=(len(faces), 128))
    descriptors_store(faces, vectors=vectors.astype(np.float32))
    row = DatasetMap.objects.create(dataset=dataset, target_stamp=maps.current_stamp(dataset.pk))
    maps.map_compute(map_id=row.pk)
    row.refresh_from_db()
    assert row.status == DatasetMap.SUCCEEDED, row.error


def test_open_the_map_select_a_cluster_and_land_in_the_grid_with_those_faces(transactional_db, new_page, bob, dataset):
    faces = make_faces(dataset, 30, labels=["female", "male", ""])
    _computed_map(dataset, faces)
    page = new_page(bob)
    page.goto(f"/datasets/{dataset.pk}/")
    page.click("#open-map")
    page.wait_for_url(re.compile(rf"/labeling/{dataset.pk}/map/$"))
    page.wait_for_function("() => window.embeddingMap && window.embeddingMap.ready()")
    assert "30 faces" in page.locator("#map-status-text").inner_text()
    assert "female" in page.locator("#map-legend").inner_text()
    canvas = page.locator("#map-canvas").bounding_box()
    screen = {int(i): (x, y) for i, x, y in page.evaluate("window.embeddingMap.screen()")}
    assert set(screen) == {f.pk for f in faces}

    # Hover a point: its face and label.
    first = faces[0]
    x, y = screen[first.pk]
    page.mouse.move(canvas["x"] + x, canvas["y"] + y)
    tip = page.locator("#map-tip")
    tip.wait_for(state="visible")
    assert tip.locator("img").get_attribute("src").endswith(first.crop)
    assert re.search(r"face \d+ · (female|male|unlabelled)", tip.inner_text())

    # Colour by split: the legend follows.
    page.select_option("#map-colour", "split")
    page.wait_for_function("() => document.querySelector('#map-legend').innerText.includes('train')")

    # Box-select the cluster of face 0 (faces 0, 3, 6, ...), with a margin around it.
    cluster = [f.pk for i, f in enumerate(faces) if i % 3 == 0]
    xs, ys = [screen[i][0] for i in cluster], [screen[i][1] for i in cluster]
    x0, y0, x1, y1 = min(xs) - 6, min(ys) - 6, max(xs) + 6, max(ys) + 6
    inside = {i for i, (px, py) in screen.items() if x0 <= px <= x1 and y0 <= py <= y1}
    assert inside == set(cluster)  # tight clusters far apart: the box holds exactly this one
    page.check("input[name='map-mode'][value='box']")
    page.mouse.move(canvas["x"] + x0, canvas["y"] + y0)
    page.mouse.down()
    page.mouse.move(canvas["x"] + (x0 + x1) / 2, canvas["y"] + (y0 + y1) / 2, steps=4)
    page.mouse.move(canvas["x"] + x1, canvas["y"] + y1, steps=4)
    page.mouse.up()
    assert page.locator("#map-selection-count").inner_text() == f"{len(cluster)} selected"
    assert set(page.evaluate("window.embeddingMap.selected()")) == set(cluster)

    # The lasso does the same with a drawn outline (here: around the same box).
    page.click("#map-clear")
    assert page.locator("#map-selection-count").inner_text() == "0 selected"
    page.check("input[name='map-mode'][value='lasso']")
    page.mouse.move(canvas["x"] + x0, canvas["y"] + y0)
    page.mouse.down()
    for px, py in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
        page.mouse.move(canvas["x"] + px, canvas["y"] + py, steps=3)
    page.mouse.up()
    assert set(page.evaluate("window.embeddingMap.selected()")) == set(cluster)

    page.click("#map-open-grid")
    page.wait_for_url(re.compile(rf"/labeling/{dataset.pk}/\?selection=\d+$"))
    page.wait_for_selector(".tile")
    shown = {int(i) for i in page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.id)")}
    assert shown == set(cluster)
    assert f"{len(cluster)} faces match" in page.locator("#match-count").inner_text()


def test_the_page_says_when_no_descriptors_exist_yet(transactional_db, new_page, bob, dataset):
    make_faces(dataset, 3)
    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/map/")
    page.wait_for_function(
        "() => document.querySelector('#map-status-text').innerText.includes('No face has a descriptor yet')"
    )
    assert "0 of 3" in page.locator("#map-status-text").inner_text()


def test_the_page_shows_the_computation_then_the_map(transactional_db, new_page, bob, dataset):
    faces = make_faces(dataset, 9)
    descriptors_store(faces)
    page = new_page(bob)
    page.goto(f"/labeling/{dataset.pk}/map/")
    # The page asked for the map; no worker runs here, so it waits for one.
    page.wait_for_function(
        "() => document.querySelector('#map-status-text').innerText.includes('Waiting for a worker')"
    )
    assert page.locator("#map-progress").is_visible()
    row = DatasetMap.objects.get(dataset=dataset)
    assert row.status == DatasetMap.QUEUED
    maps.map_compute(map_id=row.pk)  # what the embed worker would do
    page.wait_for_function("() => window.embeddingMap.ready()", timeout=30_000)
    assert "9 faces" in page.locator("#map-status-text").inner_text()
    assert page.locator("#map-progress").is_hidden()
