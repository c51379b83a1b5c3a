"""Descriptors of every face, in the background: alignment sends `faces_aligned`, embeddings
queues batches on the `embed` queue, a real worker computes them (real dlib), the dataset page
shows the progress, and a second run finds them cached."""

import pytest

from curator.models import Face
from curator.services.alignment import alignment_job_start
from embeddings import selectors
from embeddings.models import DescriptorSet, FaceDescriptor, FaceIdentity
from tests.celery_worker import wait_until
from tests.curator.test_align_tasks import import_fixture_faces, wait_for


@pytest.mark.worker
def test_aligned_faces_get_descriptors_on_the_embed_queue(start_worker, dataset, alice, alice_client):
    import_fixture_faces(dataset, limit=6)
    # Two workers, as `make run` starts them: alignment never waits for descriptors.
    aligner = start_worker(queues="align", concurrency=1)
    job = wait_for(
        alignment_job_start(dataset=dataset, images=dataset.images.all(), user=alice), lambda j: j.is_finished
    )
    faces = Face.objects.filter(dataset=dataset)
    assert job.faces == faces.count() >= 6
    # Alignment queued the batches; nothing computed them yet (no embed worker).
    assert DescriptorSet.objects.get(dataset=dataset).batches_pending >= 1
    assert selectors.descriptor_progress(dataset=dataset) == {"faces": faces.count(), "done": 0, "running": True}
    body = alice_client.get(f"/embeddings/{dataset.pk}/progress/").content.decode()
    assert "0</b> of" in body and "computing on the embed queue" in body and "hx-trigger" in body

    embedder = start_worker(queues="embed", concurrency=1)
    wait_until(lambda: selectors.descriptor_progress(dataset=dataset)["done"] == faces.count(), 240, worker=embedder)
    wait_until(lambda: not selectors.descriptor_progress(dataset=dataset)["running"], 240, worker=embedder)
    rows = FaceDescriptor.objects.filter(face__dataset=dataset)
    assert rows.count() == faces.count()
    assert all(len(bytes(r.vector)) == 512 and r.region_phash is not None for r in rows)
    # The last batch of the dataset clustered its faces by identity.
    wait_until(lambda: FaceIdentity.objects.filter(dataset=dataset).count() == faces.count(), 240, worker=embedder)
    body = alice_client.get(f"/embeddings/{dataset.pk}/progress/").content.decode()
    assert f"{faces.count()}</b> of {faces.count()} faces" in body and "hx-trigger" not in body
    # The dataset page loads the fragment.
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert f"/embeddings/{dataset.pk}/progress/" in page
    assert aligner.output()  # alignment ran on its own worker


def test_progress_fragment_needs_access(charlie_client, dataset):
    assert charlie_client.get(f"/embeddings/{dataset.pk}/progress/").status_code == 404


def test_descriptors_are_cached_and_stale_rows_recomputed(dataset, fixture_faces):
    from embeddings.services import descriptors_compute
    from tests.training.factories import add_faces, fixture_face_rows

    faces = add_faces(dataset, fixture_face_rows(fixture_faces)[:2])
    ids = [f.pk for f in faces]
    DescriptorSet.objects.create(dataset=dataset, batches_pending=1)
    assert descriptors_compute(face_ids=ids, dataset_ids=[dataset.pk]) == 2
    state = DescriptorSet.objects.get(dataset=dataset)
    assert state.batches_pending == 0 and state.stamp >= 1 and state.clusters_stamp == state.stamp
    first = {r.face_id: bytes(r.vector) for r in FaceDescriptor.objects.filter(face_id__in=ids)}
    # A face whose box moved (re-aligned) has a stale row: computed again, the other found cached.
    Face.objects.filter(pk=ids[0]).update(box_left=faces[0].box_left + 3)
    stamp = state.stamp
    descriptors_compute(face_ids=ids, dataset_ids=[dataset.pk])
    rows = {r.face_id: r for r in FaceDescriptor.objects.filter(face_id__in=ids)}
    assert rows[ids[0]].source.split("#")[1].startswith(str(faces[0].box_left + 3))
    assert bytes(rows[ids[1]].vector) == first[ids[1]]
    assert DescriptorSet.objects.get(dataset=dataset).stamp == stamp + 1  # only the recomputed batch bumps it
    assert len(selectors.dataset_vectors(dataset=dataset)[0]) == 2
