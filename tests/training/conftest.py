"""Fixtures of the training tests: a dataset whose Face rows are the 41 fixture faces (see
factories.py)."""

import pytest

from curator.models import Face
from tests.training.factories import add_faces, fixture_face_rows


@pytest.fixture
def training_faces(dataset, fixture_faces) -> list[Face]:
    """alice's dataset with the 41 fixture faces (21 female, 20 male or so), labelled, no splits."""
    dataset.min_faces_per_class = 5
    dataset.save(update_fields=["min_faces_per_class"])
    return add_faces(dataset, fixture_face_rows(fixture_faces))
