"""The history pages by keyset (issue 21): its older and newer links carry the action they
continue from (`after` / `before`), so a page deep in a million actions costs what the first does,
and actions added between two page loads neither repeat a row nor hide one. Bad cursors are a 400
with a message. Pages are five actions long here (HISTORY_PAGE patched) to keep the test small."""

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from curator.models import Dataset, Membership
from labeling import selectors, services
from labeling.models import BulkAction, LabelEvent
from tests.labeling.factories import make_faces


@pytest.fixture(autouse=True)
def short_pages(monkeypatch):
    monkeypatch.setattr(selectors, "HISTORY_PAGE", 5)


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 8, labels=["female", "male"])


def act(user, dataset, faces, i: int) -> BulkAction:
    return services.faces_update(user=user, dataset=dataset, faces=[faces[i % 8].pk], changes={"is_unsure": i % 2 == 0})


def shown(response) -> list[int]:
    return [row["action"].pk for row in response.context["rows"]]


def link(response, which: str) -> str | None:
    """The query string of the page's older or newer link (None when it has none)."""
    found = re.search(rf'id="{which}-page" href="\?([^"]*)"', response.content.decode())
    return html.unescape(found.group(1)) if found else None


def newest_first(dataset) -> list[int]:
    return list(BulkAction.objects.filter(dataset=dataset).order_by("-created_at", "-id").values_list("pk", flat=True))


def test_older_links_walk_every_action_once_while_new_ones_arrive(bob, bob_client, dataset, faces):
    for i in range(13):
        act(bob, dataset, faces, i)
    # Three actions of the same instant straddle the first page's end: the id breaks the tie.
    tied = newest_first(dataset)[3:6]
    BulkAction.objects.filter(pk__in=tied).update(created_at=timezone.now() - timedelta(hours=1))
    BulkAction.objects.exclude(pk__in=tied).filter(pk__lt=min(tied)).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    before_any_new = newest_first(dataset)
    url = f"/labeling/{dataset.pk}/history/"

    first = bob_client.get(url)
    assert first.status_code == 200 and shown(first) == before_any_new[:5]
    assert link(first, "newer") is None and link(first, "older") == f"page=2&after={before_any_new[4]}"
    # Somebody relabels while bob reads page 1: page 2 still starts right after page 1's last row.
    new = [act(bob, dataset, faces, 20 + i).pk for i in range(3)]
    second = bob_client.get(f"{url}?{link(first, 'older')}")
    assert shown(second) == before_any_new[5:10]
    third = bob_client.get(f"{url}?{link(second, 'older')}")
    assert shown(third) == before_any_new[10:13]
    assert link(third, "older") is None
    assert "page 3 of 4" in third.content.decode()  # 16 actions now

    # Back up by the newer links: the same pages, then the new actions on top.
    back = bob_client.get(f"{url}?{link(third, 'newer')}")
    assert shown(back) == before_any_new[5:10]
    top = bob_client.get(f"{url}?{link(back, 'newer')}")
    assert shown(top) == before_any_new[:5]
    assert link(top, "newer") is not None  # the three new actions are above it
    newest = bob_client.get(f"{url}?{link(top, 'newer')}")
    assert shown(newest) == list(reversed(new))
    assert link(newest, "newer") is None and "page 1 of 4" in newest.content.decode()


def test_the_links_keep_the_user_and_face_filters(alice, bob, bob_client, dataset, faces):
    for i in range(14):
        act(bob if i % 2 else alice, dataset, faces, i)
    url = f"/labeling/{dataset.pk}/history/"
    mine = [pk for pk in newest_first(dataset) if BulkAction.objects.get(pk=pk).user_id == bob.pk]
    first = bob_client.get(url, {"user": "me"})
    assert shown(first) == mine[:5] and link(first, "older").startswith("user=me&page=2&after=")
    second = bob_client.get(f"{url}?{link(first, 'older')}")
    assert shown(second) == mine[5:7] and link(second, "older") is None

    face = faces[1].pk
    for _ in range(5):
        services.faces_update(user=alice, dataset=dataset, faces=[face], changes={"split": "test"})
        services.faces_update(user=alice, dataset=dataset, faces=[face], changes={"split": "val"})
    of_face = [pk for pk in newest_first(dataset) if LabelEvent.objects.filter(action_id=pk, face_id=face).exists()]
    assert len(of_face) == 10  # two full pages: the second has no older link
    page = bob_client.get(url, {"face": str(face)})
    pages = [shown(page)]
    while link(page, "older"):
        assert link(page, "older").startswith(f"face={face}&page={len(pages) + 1}&after=")
        page = bob_client.get(f"{url}?{link(page, 'older')}")
        pages.append(shown(page))
    assert [pk for p in pages for pk in p] == of_face and [len(p) for p in pages[:-1]] == [5] * (len(pages) - 1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "x1"}, "“x1” is not an action id; showing the newest actions."),
        ({"before": "-3"}, "“-3” is not an action id"),
        ({"after": "99999999999999999999999"}, "is not an action id"),
        ({"after": "1", "before": "2"}, "either after an action or before one, not both"),
    ],
)
def test_a_cursor_that_is_no_action_id_is_a_400_with_the_newest_page(bob, bob_client, dataset, faces, params, message):
    for i in range(7):
        act(bob, dataset, faces, i)
    response = bob_client.get(f"/labeling/{dataset.pk}/history/", params)
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())
    assert shown(response) == newest_first(dataset)[:5]


def test_a_cursor_naming_another_datasets_action_is_a_400(alice, bob, bob_client, dataset, faces):
    act(bob, dataset, faces, 0)
    elsewhere = Dataset.objects.create(name="elsewhere", created_by=alice)
    Membership.objects.create(dataset=elsewhere, user=alice, role=Membership.Role.CURATOR)
    theirs = act(alice, elsewhere, make_faces(elsewhere, 1), 0)
    response = bob_client.get(f"/labeling/{dataset.pk}/history/", {"after": str(theirs.pk)})
    assert response.status_code == 400
    assert f"There is no action {theirs.pk} in this dataset's history" in html.unescape(response.content.decode())


def test_a_page_number_typed_in_still_works_and_one_past_the_end_is_a_404(bob, bob_client, dataset, faces):
    for i in range(7):
        act(bob, dataset, faces, i)
    url = f"/labeling/{dataset.pk}/history/"
    second = bob_client.get(url, {"page": "2"})
    assert shown(second) == newest_first(dataset)[5:] and link(second, "newer") == f"page=1&before={shown(second)[0]}"
    assert bob_client.get(url, {"page": "3"}).status_code == 404
