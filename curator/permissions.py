"""Who may do what. Two roles: curators (staff, or members of the `curators` group holding a
curator membership) may do everything on a dataset, including import, delete, train and
activate models; annotators may see and relabel the datasets shared with them. Nobody sees a
dataset they are not on: views fetch datasets through `visible_datasets(user)` so a guessed id
answers 404."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from curator.models import Dataset, Membership


def is_curator(user: AbstractBaseUser) -> bool:
    """May create datasets (and becomes their curator)."""
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
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return Membership.objects.filter(dataset=dataset, user=user, role=Membership.Role.CURATOR).exists()


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
