"""The Django admin's faces: staff may look at a face and delete it, not add or edit one. Faces
come from alignment, and labels change on the labeling pages, which keep the undoable history.
A face deleted there leaves the dataset's vector indexes (its descriptor stamp is bumped)."""

import pytest

from curator.models import Face
from embeddings.selectors import descriptor_stamp
from tests.conftest import logged_in_client
from tests.embeddings.factories import descriptors_store, far_apart_vectors
from tests.labeling.factories import make_faces


@pytest.mark.django_db(transaction=True)
def test_staff_view_and_delete_a_face_but_cannot_add_or_edit_one(admin_user, dataset):
    faces = make_faces(dataset, 3, labels=["female", "male"])
    descriptors_store(faces, vectors=far_apart_vectors(3))
    client = logged_in_client(admin_user)
    face = faces[0]
    url = f"/admin/curator/face/{face.pk}/change/"

    page = client.get(url)
    assert page.status_code == 200 and "Save" not in page.content.decode()  # the view-only page
    edited = client.post(url, {"label": "male", "box_left": 0})
    assert edited.status_code == 403
    face.refresh_from_db()
    assert face.label == "female"
    assert client.get("/admin/curator/face/add/").status_code == 403

    stamp = descriptor_stamp(dataset.pk)
    deleted = client.post(f"/admin/curator/face/{face.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Face.objects.filter(pk=face.pk).exists()
    assert descriptor_stamp(dataset.pk) == (stamp[0] + 1,)
