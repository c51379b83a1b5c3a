"""Imports are numbered within their dataset (1, 2, 3...), not by the id every dataset's imports
share: a new dataset's first import is #1 on its page, its report, the grid and the face page."""

from curator.models import Dataset, ImportBatch, Membership
from labeling.filters import face_filter
from labeling.selectors import filter_words
from tests.labeling.factories import make_faces


def new_batch(dataset) -> ImportBatch:
    return ImportBatch.objects.create(dataset=dataset, source="upload", source_name="photos", status="done")


def test_each_dataset_numbers_its_own_imports(alice, dataset):
    other = Dataset.objects.create(name="other", created_by=alice)
    first, elsewhere, second = new_batch(dataset), new_batch(other), new_batch(dataset)
    assert (first.number, second.number, elsewhere.number) == (1, 2, 1)
    assert second.pk > elsewhere.pk > first.pk  # the ids are global; the numbers are not
    second.save()  # saving again keeps the number
    assert ImportBatch.objects.get(pk=second.pk).number == 2


def test_pages_show_the_number_within_the_dataset(alice, alice_client, dataset):
    other = Dataset.objects.create(name="other", created_by=alice)
    Membership.objects.create(dataset=other, user=alice, role=Membership.Role.CURATOR)
    for _ in range(3):
        new_batch(other)  # ids 1-3 go to another dataset
    batch = new_batch(dataset)
    assert batch.number == 1 and batch.pk > 1
    faces = make_faces(dataset, 2, batch=batch)
    page = alice_client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert f'href="/datasets/{dataset.pk}/imports/{batch.pk}/">#1</a>' in page
    report = alice_client.get(f"/datasets/{dataset.pk}/imports/{batch.pk}/").content.decode()
    assert "<title>Import #1 · faces" in report and "<h1>Import #1 · " in report
    grid = alice_client.get(f"/labeling/{dataset.pk}/").content.decode()
    assert f'<option value="{batch.pk}">#1 photos' in grid
    flt = face_filter(dataset=dataset, params={"batch": str(batch.pk)})
    assert "from import #1" in flt.description and flt.matching.count() == 2
    assert filter_words({"batch": batch.pk}) == "from import #1"
    face_page = alice_client.get(f"/datasets/{dataset.pk}/faces/{faces[0].pk}/").content.decode()
    assert "import #1" in face_page and f"import #{batch.pk}" not in face_page
