"""Hypothesis against the form views: whatever a person (or a script posting to a form) puts in
a numeric or text field, and whatever a query string says, a page answers with the form again and
a message, a redirect, or a 4xx: never a 500. Numbers come as text, the way browsers send them:
integers, floats, NaN and infinities, overflowing exponents, non-ASCII digits, blanks and
arbitrary Unicode (NUL included)."""

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.labeling.factories import make_faces
from tests.training.test_drilldown_links import build_version

ODD_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-0", "", " ", "0x1A", "١٢", "²", "1_000", "+5"]
number_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(ODD_NUMBERS),
    st.text(max_size=12),
)
any_text = st.text(max_size=120)
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def ok(response) -> bool:
    return response.status_code < 500


@pytest.fixture
def faces(dataset):
    return make_faces(dataset, 40, labels=["female", "male"])


@pytest.fixture
def version(dataset, faces):
    return build_version(dataset)


@FUZZ
@given(
    name=any_text,
    classes=any_text,
    crop_size=number_text,
    crop_margin=number_text,
    upsample=number_text,
    detect_max_side=number_text,
    min_faces=number_text,
)
def test_the_new_dataset_form(
    alice_client: Client, name, classes, crop_size, crop_margin, upsample, detect_max_side, min_faces
):
    response = alice_client.post(
        "/datasets/new/",
        {
            "name": name,
            "classes_text": classes,
            "crop_size": crop_size,
            "crop_margin": crop_margin,
            "upsample": upsample,
            "detect_max_side": detect_max_side,
            "min_faces_per_class": min_faces,
            "detector": "hog",
            "landmark_set": "inner_eyes_bottom_lip",
        },
    )
    assert ok(response)


@FUZZ
@given(
    learning_rate=number_text,
    epochs=number_text,
    batch_size=number_text,
    dropout=number_text,
    weight_decay=number_text,
    seed=number_text,
    hidden_units=number_text,
    architecture=st.sampled_from(["embedding", "cnn_small", "pretrained", "ensemble", "x"]),
)
def test_the_training_form(alice_client, dataset, faces, architecture, **numbers):
    response = alice_client.post(f"/training/datasets/{dataset.pk}/train/", {"architecture": architecture, **numbers})
    assert ok(response)


@FUZZ
@given(
    field=st.sampled_from(["min_size_px", "min_sharpness", "max_abs_yaw", "max_abs_roll", "min_detector_score"]),
    value=number_text,
    confirm=any_text,
)
def test_the_exclusion_rule_preview_and_apply(alice_client, dataset, faces, field, value, confirm):
    assert ok(alice_client.get(f"/labeling/{dataset.pk}/curate/rules/preview/", {field: value}))
    assert ok(alice_client.post(f"/labeling/{dataset.pk}/curate/rules/", {field: value, "confirm_large": confirm}))


@FUZZ
@given(train=number_text, val=number_text, test=number_text, seed=number_text, minimum=number_text)
def test_the_split_and_minimum_per_class_forms(alice_client, dataset, faces, train, val, test, seed, minimum):
    assert ok(
        alice_client.post(
            f"/labeling/{dataset.pk}/curate/splits/", {"train": train, "val": val, "test": test, "seed": seed}
        )
    )
    assert ok(alice_client.get(f"/labeling/{dataset.pk}/curate/min-per-class/preview/", {"minimum": minimum}))
    assert ok(alice_client.post(f"/labeling/{dataset.pk}/curate/min-per-class/", {"minimum": minimum}))


@FUZZ
@given(female=any_text, male=any_text, path=any_text)
def test_the_class_keys_and_server_folder_forms(alice_client, dataset, settings, tmp_path, female, male, path):
    settings.CURATOR_IMPORT_ROOTS = [tmp_path]
    assert ok(alice_client.post(f"/labeling/{dataset.pk}/curate/keys/", {"key_female": female, "key_male": male}))
    assert ok(alice_client.post(f"/datasets/{dataset.pk}/import/", {"path": path}))


@FUZZ
@given(page=number_text, per_page=number_text, label=any_text, sharpness=number_text, who=any_text, face=any_text)
def test_the_grid_and_history_query_strings(alice_client, dataset, faces, page, per_page, label, sharpness, who, face):
    grid = {"page": page, "per_page": per_page, "label": label, "sharpness_min": sharpness}
    assert ok(alice_client.get(f"/labeling/{dataset.pk}/", grid))
    assert ok(alice_client.get(f"/labeling/{dataset.pk}/history/", {"page": page, "user": who, "face": face}))


@FUZZ
@given(min_confidence=number_text, expected=number_text, folds=number_text, a=number_text, b=number_text)
def test_the_review_and_compare_forms(alice_client, dataset, version, min_confidence, expected, folds, a, b):
    accept = f"/review/{dataset.pk}/versions/{version.pk}/suggestions/accept"
    assert ok(alice_client.get(accept, {"min_confidence": min_confidence}))
    assert ok(alice_client.post(accept, {"min_confidence": min_confidence, "expected_count": expected}))
    assert ok(alice_client.post(f"/review/{dataset.pk}/runs/start", {"folds": folds}))
    assert ok(alice_client.get(f"/training/datasets/{dataset.pk}/compare/", {"a": a, "b": b}))
