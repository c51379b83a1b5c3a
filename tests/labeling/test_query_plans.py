"""The grid's key queries are answered by the indexes chosen for a million faces (issue 21,
bench/million.py): each filter or sort walks its index, in the grid's order, with no sort of the
matching rows. Checked on PostgreSQL's plans (EXPLAIN, nothing run) of a small dataset, with
sequential scans and sorts priced out so the planner shows what the indexes can do; the timings
at a million faces are the bench's."""

import pytest
from django.db import connection
from django.db.models import F

from curator.models import Face, SourceImage
from labeling import filters, selectors, services
from labeling.models import LabelEvent
from tests.labeling.factories import make_faces, version_with_predictions
from training.models import ModelVersion

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="query plans are PostgreSQL's: the indexes are chosen for it (GIN and trigram indexes exist only there)",
)


def plan(queryset, *, hash_joins: bool = False) -> dict:
    """`hash_joins`: price out nested loops too, as a count over many rows is planned (on 30 faces
    the planner loops over them, or merges on face ids, instead)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"SET LOCAL enable_nestloop = {'off' if hash_joins else 'on'}")
        cursor.execute(f"SET LOCAL enable_mergejoin = {'off' if hash_joins else 'on'}")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        return cursor.fetchone()[0][0]["Plan"]


def nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]


def indexes_of(node: dict) -> set[str]:
    return {n["Index Name"] for n in nodes(node) if "Index Name" in n}


def sorts_of(node: dict) -> list[dict]:
    return [n for n in nodes(node) if n["Node Type"] in ("Sort", "Incremental Sort")]


@pytest.fixture
def faces(dataset):
    faces = make_faces(dataset, 30, labels=["female", "male", ""])
    Face.objects.filter(pk__in=[f.pk for f in faces[::4]]).update(sharpness=None, split="train")
    with connection.cursor() as cursor:  # statistics, as autovacuum keeps them (ANALYZE runs in a transaction)
        cursor.execute("ANALYZE curator_face, curator_sourceimage, labeling_labelevent")
    return faces


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"label": "female"}, "face_dataset_label_id"),
        ({"label": "unlabelled"}, "face_dataset_label_id"),
        ({"split": "train"}, "face_dataset_split_id"),
        ({"label": "excluded"}, "face_dataset_excluded_id"),
        ({"sort": "-size"}, "face_dataset_size_id"),
        ({"sort": "size"}, "face_dataset_size_id"),
        ({"sort": "sharpness"}, "face_dataset_sharpness_id"),
        ({"sort": "-sharpness"}, "face_dataset_sharpness_desc"),
        ({"sort": "score"}, "face_dataset_score_id"),
        ({"sort": "-score"}, "face_dataset_score_desc"),
        ({"sort": "yaw"}, "face_dataset_abs_yaw_id"),
        ({"sort": "-yaw"}, "face_dataset_abs_yaw_desc"),
    ],
)
def test_each_filter_and_sort_walks_its_index_in_the_grid_order(dataset, faces, params, index):
    flt = filters.face_filter(dataset=dataset, params=params)
    assert not flt.errors, flt.errors
    page = plan(flt.queryset.values("pk")[:120])
    assert index in indexes_of(page)
    assert not sorts_of(page), page  # the index gives the order: the page stops after 120 rows


@pytest.mark.parametrize("params", [{"label": "female"}, {"split": "train"}, {"label": "excluded"}])
def test_counts_are_index_only_scans(dataset, faces, params):
    flt = filters.face_filter(dataset=dataset, params=params)
    count = plan(flt.matching.values("pk"))
    assert any(n["Node Type"] == "Index Only Scan" for n in nodes(count)), count


def test_a_keyset_page_walks_the_sort_index_from_the_face_it_continues(dataset, faces):
    flt = filters.face_filter(dataset=dataset, params={"sort": "-sharpness"})
    keys = selectors._order_keys(flt.queryset)
    current = flt.queryset.filter(pk=faces[5].pk).values_list(*[k[0] for k in keys]).first()
    _, later = selectors._keyset_conditions(keys, current)
    page = plan(flt.queryset.filter(later).values("pk")[:120])
    assert "face_dataset_sharpness_desc" in indexes_of(page) and not sorts_of(page)


def test_metadata_equality_uses_the_gin_index_and_file_names_the_trigram_index(dataset, faces):
    identity = filters.face_filter(dataset=dataset, params={"m_identity": "person-3"})
    assert [f.pk for f in identity.queryset] == [faces[3].pk]
    assert "image_metadata_gin" in indexes_of(plan(identity.matching.values("pk")))
    race = filters.face_filter(dataset=dataset, params={"m_race": "1"})
    assert {f.pk for f in race.queryset} == {f.pk for f in faces if f.image.metadata["race"] == 1}
    file = filters.face_filter(dataset=dataset, params={"file": "0012-"})
    assert [f.pk for f in file.queryset] == [faces[12].pk]
    # The photos' side of the join (with 30 faces the planner loops over the faces instead).
    photos = SourceImage.objects.filter(original_name__icontains="0012-").values("pk")
    assert "image_original_name_trgm" in indexes_of(plan(photos))


def test_the_revert_preview_reads_the_actions_events_by_index(alice, dataset, faces):
    action = services.faces_update(user=alice, dataset=dataset, faces=[f.pk for f in faces], changes={"split": "val"})
    with connection.cursor() as cursor:  # the events' statistics now that there are some
        cursor.execute("ANALYZE labeling_labelevent")
    events = services._events_with_current_values(action)
    conflicting = plan(events.exclude(now_value=F("new_value")).values("face_id"))
    assert LabelEvent._meta.get_field("action").db_index
    assert any("action" in n for n in indexes_of(conflicting)), conflicting


# --- The prediction filters (training/filters.py) ---------------------------------------------------

PREDICTION_INDEXES = {"prediction_version_label_conf", "prediction_version_conf", "prediction_version_disagrees"}


@pytest.fixture
def predicted(dataset, faces):
    """An active version predicting every face, confidences spread; it agrees with most labels (a
    disagreement is a small share of the predictions, as with a model worth using)."""

    def predict(i, face):
        agrees = face.label and i % 7
        return (face.label if agrees else ("male", "female")[i % 2]), 0.5 + i / 61

    version = version_with_predictions(dataset, faces, predict=predict)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE training_prediction")
    return version


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"predicted": "female", "sort": "-confidence"}, "prediction_version_label_conf"),
        ({"predicted": "male", "min_conf": "0.6", "sort": "confidence"}, "prediction_version_label_conf"),
        ({"min_conf": "0.6", "max_conf": "0.9", "sort": "-confidence"}, "prediction_version_conf"),
        ({"conf_above": "0.7", "sort": "confidence"}, "prediction_version_conf"),
        ({"disagrees": "1", "sort": "-confidence"}, "prediction_version_disagrees"),
    ],
)
def test_a_confidence_sort_walks_the_predictions_index_in_the_grid_order(dataset, faces, predicted, params, index):
    flt = filters.face_filter(dataset=dataset, params=params)
    assert not flt.errors, flt.errors
    assert flt.model_version == predicted
    page = plan(flt.queryset.values("pk")[:120])
    # `index` is the one made for this filter; on 30 faces the planner may as well walk the
    # version's confidence index and filter on the way (both give the grid's order; which one it
    # prices lower depends on the table statistics of the moment). What must hold: a prediction
    # index in confidence order, and no sort.
    assert indexes_of(page) & {index, "prediction_version_conf"}, page
    assert not sorts_of(page), page  # the index gives the order (ties by face id): one page is read


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"predicted": "female"}, "prediction_version_label_conf"),
        ({"predicted": "male", "max_conf": "0.8"}, "prediction_version_label_conf"),
        ({"min_conf": "0.6", "max_conf": "0.65"}, "prediction_version_conf"),
        ({"conf_above": "0.9"}, "prediction_version_conf"),
        ({"disagrees": "1"}, "prediction_version_disagrees"),
        ({"disagrees": "0"}, "prediction_version_disagrees"),
    ],
)
def test_prediction_filter_counts_read_the_predictions_index_alone(dataset, faces, predicted, params, index):
    flt = filters.face_filter(dataset=dataset, params=params)
    assert not flt.errors, flt.errors
    count = plan(flt.matching.order_by().values("pk"), hash_joins=True)  # .count() drops the order
    # The predictions' side is read from one of the version's indexes (an index-only scan once
    # autovacuum has marked the pages all-visible: face_id is each index's last column; not inside
    # a test's transaction, so not asserted), hashed and joined to the dataset's faces. Which of
    # them the planner prices lowest on 30 faces depends on the statistics of the moment (`index`
    # is the one made for the filter, the one it takes at a million); the keys have no index of
    # their own to fall back on.
    assert indexes_of(count) & PREDICTION_INDEXES, count
    assert not indexes_of(count) & {"unique_prediction"}, count


def test_a_keyset_page_sorted_by_confidence_walks_the_prediction_index_from_the_face_it_continues(
    dataset, faces, predicted
):
    flt = filters.face_filter(dataset=dataset, params={"predicted": "female", "sort": "-confidence"})
    keys = selectors._order_keys(flt.queryset)
    third = list(flt.queryset.values_list("pk", flat=True))[2]
    current = flt.queryset.filter(pk=third).values_list(*[k[0] for k in keys]).first()
    _, later = selectors._keyset_conditions(keys, current)
    page = plan(flt.queryset.filter(later).values("pk")[:120])
    assert "prediction_version_label_conf" in indexes_of(page) and not sorts_of(page), page


def test_a_history_page_walks_the_actions_index_back_from_the_action_it_continues(alice, dataset, faces):
    for i in range(6):
        services.faces_update(user=alice, dataset=dataset, faces=[faces[i].pk], changes={"is_unsure": True})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE labeling_bulkaction")
    actions = selectors.bulk_actions_filtered(dataset=dataset)
    cursor_action = actions[2]
    older = plan(actions.filter(selectors._older_than(cursor_action)).values("pk")[:50])
    newer = plan(actions.filter(selectors._newer_than(cursor_action)).reverse().values("pk")[:50])
    for page in (older, newer):
        assert "action_dataset_created_id" in indexes_of(page) and not sorts_of(page), page
        # The walk starts at the action (its time is the index condition), not at the newest.
        assert any("created_at" in n.get("Index Cond", "") for n in nodes(page)), page
