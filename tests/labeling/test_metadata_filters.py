"""The grid's metadata filters: a text column with few values (race, source) is a select of the
values present, a numeric column (age) a min/max range; both filter the faces."""

import re

from django.core.cache import cache

from labeling import selectors
from tests.labeling.factories import make_faces

ROWS = [
    {"age": 23, "race": "white", "source": "UTKFace"},
    {"age": 35, "race": "black", "source": "UTKFace"},
    {"age": 61, "race": "asian", "source": "LFW"},
    {"age": 8, "race": "white", "source": "LFW"},
    {"age": 40, "race": "indian", "source": "UTKFace", "note": "free text 1"},
]


def faces_with_metadata(dataset, extra_notes: int = 0):
    cache.clear()
    rows = ROWS + [{"age": 30 + i, "race": "other", "source": "LFW", "note": f"note {i}"} for i in range(extra_notes)]
    return make_faces(dataset, len(rows), metadata=rows)


def tile_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-id="(\d+)"', response.content.decode())]


def test_columns_report_kind_and_choices(dataset):
    faces_with_metadata(dataset, extra_notes=40)
    columns = {c["name"]: c for c in selectors.metadata_columns(dataset=dataset)}
    assert columns["age"] == {"name": "age", "kind": "number", "choices": []}
    assert columns["race"]["kind"] == "choice"
    assert columns["race"]["choices"] == ["asian", "black", "indian", "other", "white"]
    assert columns["source"]["choices"] == ["LFW", "UTKFace"]
    # Forty-one distinct notes are not a choice: they stay a free-text match.
    assert columns["note"]["kind"] == "text"
    assert selectors.metadata_keys(dataset=dataset) == ["age", "note", "race", "source"]


def test_grid_offers_a_select_for_text_and_a_range_for_numbers(bob_client, dataset):
    faces_with_metadata(dataset)
    html = bob_client.get(f"/labeling/{dataset.pk}/?panels=open").content.decode()
    race = re.search(r'<label class="meta-choice" data-meta="race">.*?</label>', html, re.S).group(0)
    assert '<select name="m_race">' in race
    assert re.findall(r'<option value="(\w*)"', race) == ["", "asian", "black", "indian", "white"]
    assert 'data-meta="source"' in html and '<select name="m_source">' in html
    age = re.search(r'<label class="range meta-range" data-meta="age">.*?</label>', html, re.S).group(0)
    assert 'name="m_age_min"' in age and 'name="m_age_max"' in age
    # No range for a text column, no select for a number.
    assert 'name="m_race_min"' not in html and '<select name="m_age">' not in html


def test_choice_and_range_filter_the_faces_and_stay_selected(bob_client, dataset):
    faces = faces_with_metadata(dataset)
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"m_race": "white", "panels": "open"})
    assert response.status_code == 200
    assert sorted(tile_ids(response)) == [faces[0].pk, faces[3].pk]
    assert '<option value="white" selected>' in response.content.decode()

    response = bob_client.get(f"/labeling/{dataset.pk}/", {"m_age_min": "20", "m_age_max": "40", "panels": "open"})
    assert sorted(tile_ids(response)) == [faces[0].pk, faces[1].pk, faces[4].pk]
    html = response.content.decode()
    assert 'name="m_age_min" value="20"' in html and 'name="m_age_max" value="40"' in html

    response = bob_client.get(f"/labeling/{dataset.pk}/", {"m_source": "LFW", "m_age_min": "10"})
    assert tile_ids(response) == [faces[2].pk]


def test_layout_parameters_are_not_filters(bob_client, dataset):
    faces_with_metadata(dataset)
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"panels": "open", "size": "136"})
    assert response.status_code == 200
    assert len(tile_ids(response)) == len(ROWS)


def test_a_bad_range_gets_a_clear_message(bob_client, dataset):
    faces_with_metadata(dataset)
    response = bob_client.get(f"/labeling/{dataset.pk}/", {"m_age_min": "old"})
    assert response.status_code == 400
    assert "“old” is not a number (m_age_min)." in response.content.decode()
