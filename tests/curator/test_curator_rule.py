"""The one rule for curator rights (curator.permissions): staff, or BOTH in the curators group AND
a curator membership on the dataset. alice has both; dave has only the membership, erin only the
group; taking alice out of the group takes her rights away, putting dave in gives him his."""

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from curator.models import Dataset, Membership
from curator.permissions import can_curate
from tests.conftest import logged_in_client, make_user

CURATOR_PAGES = ["/datasets/{ds}/import/", "/training/datasets/{ds}/train/"]


@pytest.fixture
def curators_group(db) -> Group:
    return Group.objects.get_or_create(name=settings.CURATOR_GROUP)[0]


@pytest.fixture
def dave(dataset):
    """A curator membership, but not in the curators group."""
    user = make_user("dave")
    Membership.objects.create(dataset=dataset, user=user, role=Membership.Role.CURATOR)
    return user


@pytest.fixture
def erin(dataset, curators_group):
    """In the curators group, but only an annotator of this dataset."""
    user = make_user("erin")
    user.groups.add(curators_group)
    Membership.objects.create(dataset=dataset, user=user, role=Membership.Role.ANNOTATOR)
    return user


def status_codes(user, dataset: Dataset) -> list[int]:
    client = logged_in_client(user)
    codes = [client.get(page.format(ds=dataset.pk)).status_code for page in CURATOR_PAGES]
    codes.append(client.post(f"/labeling/{dataset.pk}/curate/exports/").status_code)
    return codes


def test_group_and_membership_together_make_a_curator(alice, dataset):
    assert can_curate(alice, dataset)
    assert status_codes(alice, dataset) == [200, 200, 302]


def test_alice_taken_out_of_the_group_loses_import_training_and_export(alice, dataset, curators_group):
    alice.groups.remove(curators_group)
    assert not can_curate(alice, dataset)
    assert status_codes(alice, dataset) == [403, 403, 403]
    # She still sees and may relabel it, as an annotator.
    assert logged_in_client(alice).get(f"/labeling/{dataset.pk}/").status_code == 200


def test_a_curator_membership_without_the_group_is_not_enough_until_the_group_is_given(dave, dataset, curators_group):
    assert not can_curate(dave, dataset)
    assert status_codes(dave, dataset) == [403, 403, 403]
    dave.groups.add(curators_group)
    assert can_curate(dave, dataset)
    assert status_codes(dave, dataset) == [200, 200, 302]


def test_the_group_without_a_curator_membership_is_not_enough(erin, dataset):
    assert not can_curate(erin, dataset)
    assert status_codes(erin, dataset) == [403, 403, 403]


def test_staff_curate_every_dataset(admin_user, dataset):
    assert can_curate(admin_user, dataset)


def test_the_admin_shows_the_rights_each_membership_gives_now(admin_user, alice, dave, erin, dataset):
    page = logged_in_client(admin_user).get(f"/admin/curator/dataset/{dataset.pk}/change/").content.decode()
    rights = [" ".join(cell.split()) for cell in re.findall(r'<td class="field-rights">\s*<p>(.*?)</p>', page, re.S)]
    # alice, bob (the fixture's annotator), dave, erin, then the blank row and the blank template.
    assert rights == ["curator", "annotator", "annotator (not in the “curators” group)", "annotator", "-", "-"]
    assert "the user in the “curators” group" in page  # the role's help text
