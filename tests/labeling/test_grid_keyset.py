"""The grid's next/previous links page by keyset (issue 21): each link carries the face it
continues from, and the page it opens is exactly the page OFFSET would give, for every sort, ties
and NULLs included; no query of a keyset page has an OFFSET. The revert preview pages by face id
the same way, with counts made by the database."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from curator.models import Face
from labeling import filters, selectors, services
from tests.labeling.factories import make_faces, version_with_predictions


@pytest.fixture
def faces(dataset):
    faces = make_faces(dataset, 23, labels=["female", "male", "male", ""])
    # Ties and NULLs: equal sizes, some sharpness missing.
    Face.objects.filter(pk__in=[f.pk for f in faces[::3]]).update(size_px=80)
    Face.objects.filter(pk__in=[f.pk for f in faces[::5]]).update(sharpness=None)
    return faces


SORTS = ["id", "-id", "size", "-size", "sharpness", "-sharpness", "label", "yaw", "-score", "confidence", "-m_age"]


@pytest.mark.parametrize("sort", SORTS)
def test_keyset_pages_are_the_offset_pages(dataset, faces, sort):
    version = version_with_predictions(dataset, faces[:18])  # some faces without a prediction: NULL confidence
    flt = filters.face_filter(dataset=dataset, params={"sort": sort, "model": str(version.pk)})
    assert not flt.errors, flt.errors
    order = list(flt.queryset.values_list("pk", flat=True))
    per_page = 5
    pages = [order[i : i + per_page] for i in range(0, len(order), per_page)]
    for n, page in enumerate(pages):
        if n + 1 < len(pages):
            following = selectors.faces_page(flt=flt, offset=0, limit=per_page, after=page[-1])
            assert [f.pk for f in following] == pages[n + 1], (sort, n)
        if n > 0:
            preceding = selectors.faces_page(flt=flt, offset=0, limit=per_page, before=page[0])
            assert [f.pk for f in preceding] == pages[n - 1], (sort, n)


def test_grid_links_carry_the_face_they_continue_from_and_use_no_offset(alice_client, dataset, faces):
    url = f"/labeling/{dataset.pk}/"
    body = alice_client.get(url, {"sort": "-size", "per_page": "60"}).content.decode()
    assert "page 1 of 1" in body
    make_faces(dataset, 100, start=23)
    body = alice_client.get(url, {"sort": "-size", "per_page": "60"}).content.decode()
    link = re.search(r'id="next-page" href="\?([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "page=2" in link and "after=" in link and "sort=-size" in link
    with CaptureQueriesContext(connection) as queries:
        second = alice_client.get(f"{url}?{link}")
    assert second.status_code == 200
    assert not [q for q in queries.captured_queries if "OFFSET" in q["sql"].upper()]
    expected = list(
        filters.face_filter(dataset=dataset, params={"sort": "-size"}).queryset.values_list("pk", flat=True)
    )
    shown = [int(i) for i in re.findall(r'<figure [^>]*data-id="(\d+)"', second.content.decode())]
    assert shown == expected[60:120]
    back = re.search(r'href="\?([^"]+)">← previous', second.content.decode()).group(1).replace("&amp;", "&")
    assert "page=1" in back and "before=" not in back  # page 1 is simply the first page


def test_a_face_gone_from_the_filter_falls_back_to_the_page_number(alice_client, dataset, faces):
    url = f"/labeling/{dataset.pk}/"
    labelled = list(
        filters.face_filter(dataset=dataset, params={"label": "male"}).queryset.values_list("pk", flat=True)
    )
    gone = labelled[4]
    services.faces_update(user=None, dataset=dataset, faces=[gone], changes={"label": "female"})
    body = alice_client.get(url, {"label": "male", "per_page": "60", "page": "1", "after": str(gone)})
    assert body.status_code == 200
    shown = [int(i) for i in re.findall(r'<figure [^>]*data-id="(\d+)"', body.content.decode())]
    assert shown == [i for i in labelled if i != gone]


def test_revert_preview_pages_by_face_id_and_counts_in_the_database(alice, bob, dataset, faces):
    ids = sorted(f.pk for f in faces if f.label != "female")
    action = services.faces_update(user=alice, dataset=dataset, faces=ids, changes={"label": "female"})
    services.faces_update(user=bob, dataset=dataset, faces=ids[:3], changes={"is_unsure": True})
    services.faces_update(user=bob, dataset=dataset, faces=[ids[5], ids[7]], changes={"label": "male"})
    preview = services.bulk_action_revert_preview(action=action, limit=4)
    restorable = [i for i in ids if i not in (ids[5], ids[7])]
    assert preview["restorable"] == len(restorable) and preview["conflict_faces"] == 2
    seen = []
    after = None
    while True:
        preview = services.bulk_action_revert_preview(action=action, limit=4, after=after)
        seen += [row["face"].pk for row in preview["changes"]]
        assert preview["last_shown"] == len(seen) and preview["more"] == len(restorable) - len(seen)
        after = preview["next_after"]
        if after is None:
            break
    assert seen == restorable
    assert [row["face"].pk for row in preview["conflicts"]] == [ids[5], ids[7]]
    was = services.value_words("label", action.events.get(face_id=ids[5]).old_value)
    assert preview["conflicts"][0]["changes"] == [f"label: this action set female, now male, before it {was}"]
    # The unsure mark bob added is no conflict: the revert only touches the label.
    first = services.bulk_action_revert_preview(action=action, limit=4)
    old = action.events.get(face_id=ids[0]).old_value
    assert first["changes"][0]["changes"] == [services.change_words("label", "female", old)]
    assert services.bulk_action_revert(user=alice, action=action).reverted == len(restorable)
