"""The identities page in Chromium at 1366x768 (issue 20): alice sees the clusters by size, ticks
two and merges them ("same person"), opens a cluster and takes out a face of another person
("these are different people"), then follows a cluster's link to the grid filtered to it."""

import numpy as np
import pytest

from embeddings.models import FaceIdentity
from embeddings.services import identity_clusters_update
from labeling.models import BulkAction
from tests.browser.conftest import logged_in_pages
from tests.embeddings.factories import descriptors_store
from tests.labeling.factories import make_faces
from tests.labeling.test_identities import person_vectors

pytestmark = pytest.mark.browser


@pytest.fixture
def small_page(browser, live_server):
    yield from logged_in_pages(browser, live_server, {"width": 1366, "height": 768})


def cluster_of(face) -> int:
    return FaceIdentity.objects.get(face_id=face.pk).cluster


def test_merge_split_and_filter_the_grid_by_identity(transactional_db, small_page, alice, dataset):
    sizes = [4, 3, 2]
    faces = make_faces(dataset, 9, labels=["female", "male"], metadata=[{}] * 9)
    descriptors_store(faces, vectors=np.asarray(person_vectors(sizes)))
    identity_clusters_update(dataset_id=dataset.pk)
    people = [faces[:4], faces[4:7], faces[7:]]
    page = small_page(alice)
    page.goto(f"/datasets/{dataset.pk}/")
    page.goto(f"/labeling/{dataset.pk}/")
    page.click("nav >> text=Identities")
    page.wait_for_selector("#identity-list")
    assert "3 clusters of 9 faces" in page.inner_text("#identity-summary")
    sizes_shown = page.locator(".identity-card .identity-size").all_inner_texts()
    assert sizes_shown == ["4 faces", "3 faces", "2 faces"]
    assert page.locator(f"#cluster-{cluster_of(people[0][0])} .thumbs img").count() == 4

    # Same person: the button waits for two ticks.
    assert page.is_disabled("#merge-clusters")
    page.check(f"#cluster-{cluster_of(people[1][0])} input.cluster-pick")
    page.wait_for_function("() => document.getElementById('merge-count').textContent.includes('1 cluster ticked')")
    assert page.is_disabled("#merge-clusters")
    page.check(f"#cluster-{cluster_of(people[2][0])} input.cluster-pick")
    page.wait_for_function("() => !document.getElementById('merge-clusters').disabled")
    page.click("#merge-clusters")
    page.wait_for_selector(".messages")
    assert "Same person" in page.inner_text(".messages")
    assert cluster_of(people[1][0]) == cluster_of(people[2][0])
    assert page.locator(".identity-card .identity-size").all_inner_texts() == ["5 faces", "4 faces"]

    # Different people: open the biggest cluster and take one face out.
    big = cluster_of(people[0][0])
    page.click(f"#cluster-{big} a.identity-open")
    page.wait_for_selector("#cluster-faces")
    assert page.is_disabled("#split-cluster")
    page.check(f'#cluster-faces input[value="{people[0][3].pk}"]')
    page.wait_for_function("() => !document.getElementById('split-cluster').disabled")
    page.click("#split-cluster")
    page.wait_for_selector(".messages")
    assert f"left cluster {big}" in page.inner_text(".messages")
    assert page.locator("#cluster-faces figure").count() == 3
    assert cluster_of(people[0][3]) != big
    assert set(BulkAction.objects.filter(dataset=dataset).values_list("kind", flat=True)) == {
        BulkAction.Kind.SAME_PERSON,
        BulkAction.Kind.DIFFERENT_PEOPLE,
    }

    # The grid, filtered to the cluster: exactly its faces.
    page.click("a.identity-grid")
    page.wait_for_selector("#match-count")
    assert page.inner_text("#match-count").startswith("3 faces match")
    assert f"of identity cluster {big}" in page.inner_text("#filter-words")
    assert f"identity={big}" in page.url

    # The history lists both actions, with a revert.
    page.goto(f"/labeling/{dataset.pk}/history/")
    assert "Different people (split)" in page.inner_text("#history")
    assert "Same person (merge)" in page.inner_text("#history")
