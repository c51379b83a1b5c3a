"""What apps above labeling plug into it. Labeling shows per-face model predictions (the grid's
tiles and suggestions, the detail panel, the prediction filters) without importing the app that
makes them: that app registers a prediction provider in its AppConfig.ready() (training does, see
training/apps.py and `training.selectors.PREDICTION_PROVIDER`). Without one, faces simply have no
predictions and there are no model versions to choose.

A "model version" here is whatever object the provider hands out: labeling reads only its `pk`,
`number` and `classes`, and hands it back to the provider."""

from __future__ import annotations

from typing import Any, Protocol

from django.db.models import QuerySet

from curator.models import Dataset, Face


class PredictionProvider(Protocol):
    def versions(self, *, dataset: Dataset) -> QuerySet | list:
        """The dataset's model versions, newest first."""

    def version(self, *, dataset: Dataset, version_id: int) -> Any | None:
        """One model version of the dataset, None when there is no such version of it."""

    def active_version(self, *, dataset: Dataset) -> Any | None:
        """The dataset's active model version, if any."""

    def predictions(self, *, model_version: Any, face_ids: list[int]) -> dict[int, tuple[str, float]]:
        """{face id: (predicted label, confidence)} of one version for the faces it predicted."""

    def face_history(self, *, face: Face, limit: int = 10) -> list[dict]:
        """The face's predictions by version, newest first: dicts with `version`, `label`,
        `confidence`, `probabilities` ([(class, p)]) and `disagrees`."""

    def face_ids(self, *, model_version: Any, **lookups) -> QuerySet:
        """The ids of faces with a prediction of this version matching `lookups` (fields of a
        prediction: predicted_label, disagrees, confidence__gte, ...), as a subquery."""

    def version_has_splits(self, *, model_version: Any) -> bool:
        """Whether the version kept a record of the split of each face it was trained on."""

    def version_splits(self, *, model_version: Any) -> dict[int, str] | None:
        """{face id: split} as the version was trained and tested (None: no record)."""


class NoPredictions:
    """The provider when no app registered one: no versions, no predictions."""

    def versions(self, *, dataset: Dataset) -> list:
        return []

    def version(self, *, dataset: Dataset, version_id: int) -> None:
        return None

    def active_version(self, *, dataset: Dataset) -> None:
        return None

    def predictions(self, *, model_version: Any, face_ids: list[int]) -> dict[int, tuple[str, float]]:
        return {}

    def face_history(self, *, face: Face, limit: int = 10) -> list[dict]:
        return []

    def face_ids(self, *, model_version: Any, **lookups) -> QuerySet:
        return Face.objects.none().values("pk")

    def version_has_splits(self, *, model_version: Any) -> bool:
        return False

    def version_splits(self, *, model_version: Any) -> dict[int, str] | None:
        return None


_provider: PredictionProvider = NoPredictions()


def prediction_provider_register(provider: PredictionProvider) -> None:
    """Called once by the app that makes predictions (in its AppConfig.ready())."""
    global _provider
    _provider = provider


def prediction_provider() -> PredictionProvider:
    return _provider
