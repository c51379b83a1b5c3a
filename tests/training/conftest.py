"""Fixtures of the training tests: a dataset whose Face rows are the 41 fixture faces (see
factories.py), and one client per named user."""

import pytest
from django.test import Client

from curator.models import Face
from tests.training.factories import add_faces, fixture_face_rows


@pytest.fixture
def training_faces(dataset, fixture_faces) -> list[Face]:
    """alice's dataset with the 41 fixture faces (21 female, 20 male or so), labelled, no splits."""
    dataset.min_faces_per_class = 5
    dataset.save(update_fields=["min_faces_per_class"])
    return add_faces(dataset, fixture_face_rows(fixture_faces))


# Separate clients, so a test can act as alice, bob and charlie side by side (the shared
# fixtures all log in the same `client`).
@pytest.fixture
def alice_client(alice):
    c = Client()
    c.force_login(alice)
    return c


@pytest.fixture
def bob_client(bob):
    c = Client()
    c.force_login(bob)
    return c


@pytest.fixture
def charlie_client(charlie):
    c = Client()
    c.force_login(charlie)
    return c
