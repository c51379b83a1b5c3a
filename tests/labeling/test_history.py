"""The history page in words: thumbnails of the faces an action changed, old -> new values, the
action's parameters as a sentence, who and when, filters by person, kind and face, pagination."""

import pytest

from labeling import selectors, services
from labeling.models import BulkAction
from tests.labeling.factories import make_faces


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 24, labels=["female", "male", "male", ""])


def row_html(body: str, action_id: int) -> str:
    start = body.index(f'<tr id="action-{action_id}">')
    return body[start : body.index("</tr>", start)]


def test_rows_show_thumbnails_changes_in_words_and_params(alice, bob, bob_client, dataset, faces):
    relabel = services.faces_update(
        user=bob, dataset=dataset, faces=[f.pk for f in faces[:12]], changes={"label": "female"}
    )
    rule = services.exclusion_rule_apply(
        user=alice, dataset=dataset, thresholds={"min_sharpness": "40", "min_size_px": "48"}, confirmed_large=True
    )
    body = bob_client.get(f"/labeling/{dataset.pk}/history/").content.decode()
    row = row_html(body, relabel.pk)
    assert row.count('<img src="/media/') == 8  # up to eight thumbnails
    assert f'href="/datasets/{dataset.pk}/faces/{faces[1].pk}/"' in row
    # 12 faces: 3 female already (unchanged), 6 male and 3 unlabelled became female.
    assert "label: male → female (6 faces)" in row and "label: unlabelled → female (3 faces)" in row
    assert "9 faces" in row and "(first 8 shown)" in row
    assert "bob" in row and " ago" in row
    rule_row = row_html(body, rule.pk)
    assert "faces smaller than 48 px, sharpness below 40" in rule_row
    assert "excluded: no → yes" in rule_row
    assert "{" not in rule_row  # no Python dict


def test_params_in_words_for_each_kind(alice, dataset, faces):
    flt = services.faces_update(
        user=alice,
        dataset=dataset,
        faces=[faces[0].pk],
        changes={"split": "test"},
        params={"source": "grid", "filter": {"label": "unlabelled", "min_size": "48", "m_age_min": "20"}},
    )
    assert selectors.action_params_words(flt) == (
        "all faces matching: unlabelled faces, size at least 48 px, age at least 20, from the grid"
    )
    split = services.splits_assign(user=alice, dataset=dataset, seed=3)
    assert selectors.action_params_words(split).startswith("seed 3, train/val/test 70/15/15 %")
    revert = services.bulk_action_revert(user=alice, action=flt)
    assert selectors.action_params_words(revert.action) == f"reverted action #{flt.pk}"
    minimum = services.min_per_class_rule_apply(user=alice, dataset=dataset, minimum=100, confirmed_large=True)
    assert selectors.action_params_words(minimum) == "classes with fewer than 100 faces (classes: female, male)"
    keep = BulkAction(kind=BulkAction.Kind.DEDUPLICATE, params={"kept": 7, "faces": [7, 8, 9]})
    assert selectors.action_params_words(keep) == "kept face 7, excluded its near-duplicates 8, 9"


def test_filter_by_user_kind_and_face(alice, bob, bob_client, dataset, faces):
    mine = services.faces_update(user=bob, dataset=dataset, faces=[faces[0].pk], changes={"label": "male"})
    hers = services.faces_update(user=alice, dataset=dataset, faces=[faces[1].pk], changes={"is_unsure": True})
    other = services.faces_update(user=alice, dataset=dataset, faces=[faces[2].pk], changes={"label": "female"})
    url = f"/labeling/{dataset.pk}/history/"

    def shown(**params) -> list[int]:
        response = bob_client.get(url, params)
        assert response.status_code == 200
        return [row["action"].pk for row in response.context["rows"]]

    assert shown() == [other.pk, hers.pk, mine.pk]
    assert shown(user="me") == [mine.pk]
    assert shown(user="alice") == [other.pk, hers.pk]
    assert shown(kind="unsure") == [hers.pk]
    assert shown(face=str(faces[2].pk)) == [other.pk]
    assert shown(user="alice", kind="label") == [other.pk]
    body = bob_client.get(url, {"face": faces[2].pk}).content.decode()
    assert f'href="/datasets/{dataset.pk}/faces/{faces[2].pk}/"' in body
    assert "No action matches this filter." in bob_client.get(url, {"user": "nobody"}).content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [({"kind": "explode"}, "There is no kind of action “explode”"), ({"face": "x1"}, "“x1” is not a face id")],
)
def test_bad_history_filters_say_why(bob_client, dataset, faces, params, message):
    response = bob_client.get(f"/labeling/{dataset.pk}/history/", params)
    assert response.status_code == 400 and message in response.content.decode()


def test_history_is_paginated_keeping_the_filter(bob, bob_client, dataset, faces):
    for i in range(52):
        services.faces_update(user=bob, dataset=dataset, faces=[faces[i % 24].pk], changes={"is_unsure": i % 2 == 0})
    first = bob_client.get(f"/labeling/{dataset.pk}/history/", {"user": "me"})
    assert len(first.context["rows"]) == 50
    assert "user=me&amp;page=2" in first.content.decode()
    second = bob_client.get(f"/labeling/{dataset.pk}/history/", {"user": "me", "page": "2"})
    assert len(second.context["rows"]) == 2
    assert BulkAction.objects.count() == 52


def test_history_page_costs_a_fixed_number_of_queries(bob, bob_client, dataset, faces, django_assert_max_num_queries):
    for i in range(20):
        services.faces_update(
            user=bob,
            dataset=dataset,
            faces=[f.pk for f in faces[i : i + 4]],
            changes={"split": "val" if i % 2 else "test"},
        )
    with django_assert_max_num_queries(16):
        bob_client.get(f"/labeling/{dataset.pk}/history/")


def test_charlie_cannot_see_the_history(charlie_client, dataset, faces):
    assert charlie_client.get(f"/labeling/{dataset.pk}/history/").status_code == 404
