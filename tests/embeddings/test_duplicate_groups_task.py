"""The near-duplicate groups are computed by a worker of the `embed` queue and stored (issue 21:
at a million faces the neighbour graph takes minutes); the duplicates page shows the stored
groups, says when they are being computed or out of date (new descriptors), and a curator
computes them again."""

import time

import pytest

from embeddings import duplicates
from embeddings.models import DuplicateGroups
from tests.embeddings.factories import descriptors_store, duplicates_compute_now, far_apart_vectors, near
from tests.labeling.factories import make_faces


def _wait_groups(dataset, timeout: float = 120.0) -> DuplicateGroups:
    """Until the worker has stored the groups it was asked for (or failed)."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        row = DuplicateGroups.objects.filter(dataset=dataset).first()
        if row and row.status in (DuplicateGroups.SUCCEEDED, DuplicateGroups.FAILED) and row.stamp == row.target_stamp:
            return row
        time.sleep(0.5)
    raise AssertionError(f"the groups were not computed: {row and (row.status, row.step, row.error)}")


def _faces_with_pairs(dataset, n: int = 8, start: int = 0):
    faces = make_faces(dataset, n, labels=["female", "male"], start=start)
    v = far_apart_vectors(n, seed=start)
    v[1] = near(v[0], 0.02)  # 0, 1: the same shot
    descriptors_store(faces, vectors=v, seed=start)
    return faces


def test_the_embed_worker_computes_the_groups_the_page_shows(start_worker, dataset, alice_client):
    faces = _faces_with_pairs(dataset)
    url = f"/labeling/{dataset.pk}/duplicates/"
    first = alice_client.get(url)  # the first visit queues the computation
    assert first.status_code == 200 and first.context["state"]["computing"]
    assert 'id="dup-computing"' in first.content.decode() and first.context["group_count"] == 0

    start_worker(queues="embed", concurrency=1)
    row = _wait_groups(dataset)
    assert row.status == DuplicateGroups.SUCCEEDED, row.error
    assert row.groups == [[faces[0].pk, faces[1].pk]] and row.faces == 8
    page = alice_client.get(url)
    assert page.context["group_count"] == 1 and not page.context["state"]["computing"]
    body = page.content.decode()
    assert "same shot" in body and 'id="dup-stale"' not in body and 'id="dup-compute"' in body

    # New descriptors: the stored groups are shown, marked out of date, and nothing is queued.
    more = make_faces(dataset, 2, start=8)
    v = far_apart_vectors(2, seed=9)
    v[1] = near(v[0], 0.03)
    descriptors_store(more, vectors=v, seed=9)
    stale = alice_client.get(url)
    assert 'id="dup-stale"' in stale.content.decode() and stale.context["group_count"] == 1
    assert DuplicateGroups.objects.get(dataset=dataset).status == DuplicateGroups.SUCCEEDED

    # A curator computes them again: the worker adds the new pair.
    response = alice_client.post(f"/labeling/{dataset.pk}/duplicates/compute/", follow=True)
    assert "are being computed" in response.content.decode()
    row = _wait_groups(dataset)
    assert sorted(row.groups) == sorted([[faces[0].pk, faces[1].pk], [more[0].pk, more[1].pk]])
    again = alice_client.get(url)
    assert again.context["group_count"] == 2 and 'id="dup-stale"' not in again.content.decode()


@pytest.mark.django_db
def test_the_page_never_compares_faces_in_the_request(dataset, alice_client, monkeypatch):
    faces = _faces_with_pairs(dataset)

    def tripwire(*args, **kwargs):
        raise AssertionError("the duplicates page built the neighbour graph in the request")

    monkeypatch.setattr(duplicates, "_descriptor_candidates", tripwire)
    url = f"/labeling/{dataset.pk}/duplicates/"
    assert alice_client.get(url).status_code == 200
    assert alice_client.get(url, {"conflicts": "1"}).status_code == 200
    monkeypatch.undo()
    duplicates_compute_now(dataset)
    monkeypatch.setattr(duplicates, "_descriptor_candidates", tripwire)
    page = alice_client.get(url)
    assert page.context["group_count"] == 1 and page.context["groups"][0]["faces"][0].pk == faces[0].pk


@pytest.mark.django_db
def test_a_failed_computation_says_why_and_only_curators_compute_again(dataset, alice_client, bob_client):
    _faces_with_pairs(dataset)
    DuplicateGroups.objects.create(
        dataset=dataset, status=DuplicateGroups.FAILED, error="The worker ran out of memory."
    )
    url = f"/labeling/{dataset.pk}/duplicates/"
    body = alice_client.get(url).content.decode()
    assert "The worker ran out of memory." in body and 'id="dup-compute"' in body
    assert 'id="dup-compute"' not in bob_client.get(url).content.decode()  # bob annotates
    assert bob_client.post(f"/labeling/{dataset.pk}/duplicates/compute/").status_code == 403
    assert DuplicateGroups.objects.get(dataset=dataset).status == DuplicateGroups.FAILED
    assert alice_client.post(f"/labeling/{dataset.pk}/duplicates/compute/").status_code == 302
    assert DuplicateGroups.objects.get(dataset=dataset).status == DuplicateGroups.QUEUED
