"""Who may do what. Two roles: curators may do everything on a dataset, including import, delete,
export, train and activate models; annotators may see and relabel the datasets shared with them.
Nobody sees a dataset they are not on: views fetch datasets through `visible_datasets(user)` so a
guessed id answers 404.

The one rule for curator rights on a dataset: staff (or a superuser), or BOTH a member of the
`curators` group (settings.CURATOR_GROUP) AND holding a curator membership on that dataset. The
group is the switch an administrator flips to take curator rights away everywhere at once: a user
removed from it keeps their memberships but acts as an annotator on those datasets until added
back. The admin's membership list says the same (curator.admin.MembershipInline)."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from curator.models import Dataset, Membership


def is_curator(user: AbstractBaseUser) -> bool:
    """May create datasets (and becomes their curator): staff, or a member of the curators group."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return user.groups.filter(name=settings.CURATOR_GROUP).exists()


def visible_datasets(user: AbstractBaseUser) -> QuerySet[Dataset]:
    if not user.is_authenticated:
        return Dataset.objects.none()
    if user.is_staff or user.is_superuser:
        return Dataset.objects.all()
    return Dataset.objects.filter(memberships__user=user).distinct()


def can_curate(user: AbstractBaseUser, dataset: Dataset) -> bool:
    """Staff, or in the curators group AND a curator of this dataset (the module's one rule)."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return (
        is_curator(user)
        and Membership.objects.filter(dataset=dataset, user=user, role=Membership.Role.CURATOR).exists()
    )


def can_annotate(user: AbstractBaseUser, dataset: Dataset) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return Membership.objects.filter(dataset=dataset, user=user).exists()


def get_dataset_for(user: AbstractBaseUser, dataset_id: int, *, curate: bool = False) -> Dataset:
    """The dataset if the user may see it (404 otherwise, so ids are not confirmed to exist);
    PermissionDenied (403) when it is visible but the action needs a curator."""
    dataset = get_object_or_404(visible_datasets(user), pk=dataset_id)
    if curate and not can_curate(user, dataset):
        raise PermissionDenied("Only curators of this dataset may do that.")
    return dataset
