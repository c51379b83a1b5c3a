"""Ids read from query strings and URL segments: only ASCII digits within 64 bits name a row, and
anything else gets the page's own "not an id" answer (400/404), never a 500."""

import pytest

from curator.params import LARGEST_ID, id_param


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12), (" 7 ", 7), ("0", 0), (str(LARGEST_ID), LARGEST_ID)]
    + [(odd, None) for odd in ["", None, "²", "١٢", "-3", "+5", "1_000", "1e3", "0x1A", "nan", str(LARGEST_ID + 1)]],
)
def test_only_ascii_digits_within_64_bits_are_an_id(raw, expected):
    assert id_param(raw) == expected


@pytest.mark.parametrize("face", ["²", "١٢", str(2**70)])
def test_the_history_answers_400_or_200_for_a_face_that_is_no_id(alice_client, dataset, face):
    response = alice_client.get(f"/labeling/{dataset.pk}/history/", {"face": face})
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("raw", ["²", "١٢", str(2**70)])
def test_the_version_api_refuses_a_dataset_that_is_no_id(alice_client, dataset, raw):
    response = alice_client.get("/api/v1/training/versions/", {"dataset": raw})
    assert response.status_code == 400


def test_the_history_refuses_a_user_name_with_nul(alice_client, dataset):
    response = alice_client.get(f"/labeling/{dataset.pk}/history/", {"user": "\x00"})
    assert response.status_code == 400
