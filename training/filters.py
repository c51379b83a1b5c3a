"""The grid's and the API's prediction filters, plugged into labeling's `FaceFilterSet` (labeling
never imports training; training/apps.py registers `PREDICTION_FILTERS`): `model` (a version id,
default the dataset's active one), `predicted`, `min_conf` / `conf_above` / `max_conf`, `disagrees`
and the `confidence` sort.

The `model_*` filters select faces as the version saw them, from its frozen snapshot (split, label
and slices at training time), so a drill-down from the version's evaluation (a confusion cell, a
slice bar, a calibration bin) shows exactly the faces the figure counts even after relabels:
`model_split` (train/val/test), `model_label` (the label it was trained/tested with),
`model_slice` (`<kind>:<value>`, e.g. `quality:blurry`, `age_band:20-39`) and `model_correct`
(1: its prediction matches that label, 0: an error). They keep to faces with a prediction of the
version, as the evaluation does."""

from __future__ import annotations

import functools
import sys

from django.db import connection
from django.db.models import F, FilteredRelation, Lookup, OuterRef, Q, Subquery

from curator.params import id_param
from labeling.filters import Narrowing, NumberFilter, TextFilter
from training.models import ModelVersion, Prediction

CONF = (("min_conf", "confidence__gte"), ("conf_above", "confidence__gt"), ("max_conf", "confidence__lte"))
SNAPSHOT_FILTERS = ("model_split", "model_label", "model_slice", "model_correct")
CONF_WORDS = {"min_conf": "at least", "conf_above": "above", "max_conf": "at most"}


class _AnyOf(Lookup):
    """`column = ANY(%s)` with the ids as one array parameter: Django compiles `__in` with one
    placeholder per id, which costs half a second for the 15,000 test faces of 100,000."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, conn):
        lhs, params = self.process_lhs(compiler, conn)
        return f"{lhs} = ANY(%s)", [*params, list(self.rhs)]


def _face_in(ids: list[int]) -> Q:
    if connection.vendor == "postgresql":
        return Q(_AnyOf(F("face_id"), ids))
    return Q(face_id__in=ids)


@functools.lru_cache(maxsize=4)
def _snapshot(version_id: int, path: str, created: str) -> dict[int, tuple[str, str, str]]:
    """{face id: (label, split, slices as "kind=value;...")} of a version's snapshot. The file
    never changes once written, so a per-process cache keyed by the version (id and creation time,
    in case a database reuses an id) and the file's path is always right. Strings are interned:
    a few distinct values repeat over 100,000 faces."""
    from training.data import snapshot_read

    return {
        row["face_id"]: (sys.intern(row["label"]), sys.intern(row["split"]), sys.intern(row.get("slices") or ""))
        for row in snapshot_read(path)
    }


def snapshot_faces(*, model_version: ModelVersion) -> dict[int, tuple[str, str, str]] | None:
    """The version's snapshot by face id (None when it has none or the file is gone)."""
    if not model_version.snapshot:
        return None
    try:
        return _snapshot(model_version.pk, model_version.snapshot, str(model_version.created_at))
    except (FileNotFoundError, OSError):
        return None


class PredictionFilters:
    sorts = ("confidence",)

    def filters(self) -> dict:
        return {
            "model": NumberFilter(
                method="filter_nothing", integer=True, label="model version id (default: the active one)"
            ),
            "predicted": TextFilter(method="filter_nothing", label="predicted label"),
            "min_conf": NumberFilter(method="filter_nothing", label="model confidence at least"),
            "conf_above": NumberFilter(method="filter_nothing", label="model confidence above"),
            "max_conf": NumberFilter(method="filter_nothing", label="model confidence at most"),
            "disagrees": TextFilter(
                method="filter_nothing", label="1: the model disagrees with the label; 0: it does not"
            ),
            "differs_from": NumberFilter(
                method="filter_nothing", integer=True, label="another version id: faces the two predict differently"
            ),
            "model_split": TextFilter(
                method="filter_nothing", label="train, val or test: the split the version used (its snapshot)"
            ),
            "model_label": TextFilter(
                method="filter_nothing", label="the label the version was trained/tested with (its snapshot)"
            ),
            "model_slice": TextFilter(
                method="filter_nothing", label="<kind>:<value> of the version's evaluation slices, e.g. quality:blurry"
            ),
            "model_correct": TextFilter(
                method="filter_nothing", label="1: the version's prediction matches its snapshot label; 0: an error"
            ),
        }

    def narrow(self, *, dataset, queryset, data, raw, sort, values, errors) -> Narrowing:
        model_version = None
        if raw.get("model", ""):
            model_id = data.get("model")
            if model_id is not None:
                model_version = ModelVersion.objects.filter(dataset=dataset, pk=model_id).first()
                if model_version is None:
                    errors.setdefault("model", []).append(f"Model version {model_id} is not a model of this dataset.")
                values["model"] = model_id
        else:
            model_version = ModelVersion.objects.filter(dataset=dataset, is_active=True).first()
        # Only said when the filters that come before (label ... model) are fine, as it always was.
        earlier = any(errors.get(k) for k in ("label", "split", "batch", "outcome", "model"))
        wants_prediction = any(
            raw.get(k)
            for k in ("predicted", "disagrees", "min_conf", "conf_above", "max_conf", "differs_from", *SNAPSHOT_FILTERS)
        )
        if (wants_prediction or sort.lstrip("-") == "confidence") and model_version is None and not earlier:
            errors.setdefault("model", []).append(
                "Prediction filters need a model: this dataset has no active model version."
            )
        if model_version is None:
            return Narrowing(matching=queryset, orders={"confidence": None})

        # Prediction filters are one semi-join on this version's predictions (hash join, no
        # per-row subquery, and no join at all in the count when no prediction filter is set).
        lookups: dict = {}
        predicted = raw.get("predicted", "")
        if predicted:
            if predicted not in model_version.classes:
                errors.setdefault("predicted", []).append(
                    f"Unknown predicted label “{predicted}”: the model knows {', '.join(model_version.classes)}."
                )
            lookups["predicted_label"] = predicted
            values["predicted"] = predicted
        for key, lookup in CONF:
            if data.get(key) is not None:
                lookups[lookup] = data[key]
                values[key] = raw.get(key)
        disagrees = raw.get("disagrees", "")
        if disagrees:
            if disagrees not in ("1", "0", "true", "false"):
                errors.setdefault("disagrees", []).append(f"“{disagrees}” is not valid for disagrees: use 1 or 0.")
            elif disagrees in ("1", "true"):
                lookups["disagrees"] = True
                values["disagrees"] = "1"
            else:
                queryset = queryset.exclude(
                    pk__in=Prediction.objects.filter(model_version=model_version, disagrees=True).values("face_id")
                )
                values["disagrees"] = "0"
        queryset = self._differs_from(
            dataset=dataset, model_version=model_version, queryset=queryset, raw=raw, values=values, errors=errors
        )
        condition = self._snapshot_condition(model_version=model_version, raw=raw, values=values, errors=errors)
        # The snapshot condition and the prediction lookups are one semi-join (the confidence
        # sort below joins the predictions itself, so it takes the snapshot part on its own).
        unsorted = queryset
        if condition is not None:
            unsorted = queryset.filter(
                pk__in=Prediction.objects.filter(condition, model_version=model_version).values("face_id")
            )
        matching = queryset
        if lookups or condition is not None:
            predictions = Prediction.objects.filter(model_version=model_version, **lookups)
            if condition is not None:
                predictions = predictions.filter(condition)
            matching = queryset.filter(pk__in=predictions.values("face_id"))

        def by_confidence(desc: bool):
            if lookups:
                # Every face shown has a matching prediction, so an inner join that can walk the
                # (model_version, disagrees, confidence, face) index in order and stop after one page.
                qs = unsorted.filter(
                    predictions__model_version=model_version, **{f"predictions__{k}": v for k, v in lookups.items()}
                ).annotate(pred_confidence=F("predictions__confidence"))
                order = F("pred_confidence").desc() if desc else F("pred_confidence").asc()
            else:
                qs = unsorted.annotate(
                    pred=FilteredRelation("predictions", condition=Q(predictions__model_version=model_version))
                ).annotate(pred_confidence=F("pred__confidence"))
                order = (
                    F("pred_confidence").desc(nulls_last=True) if desc else F("pred_confidence").asc(nulls_last=True)
                )
            return qs.order_by(order, "-id" if desc else "id")

        return Narrowing(matching=matching, model_version=model_version, orders={"confidence": by_confidence})

    def _differs_from(self, *, dataset, model_version, queryset, raw, values, errors):
        """`differs_from=<version id>`: faces both versions predicted, with different labels (the
        compare page's "faces on which they differ")."""
        raw_id = raw.get("differs_from", "").strip()
        other_id = id_param(raw_id)
        if other_id is None:  # empty, or not a number (the form says so)
            return queryset
        other = ModelVersion.objects.filter(dataset=dataset, pk=other_id).first()
        if other is None:
            errors.setdefault("differs_from", []).append(f"Model version {raw_id} is not a model of this dataset.")
            return queryset
        values["differs_from"] = other.pk
        other_label = Prediction.objects.filter(model_version=other, face_id=OuterRef("face_id")).values(
            "predicted_label"
        )[:1]
        differ = (
            Prediction.objects.filter(model_version=model_version)
            .annotate(other_label=Subquery(other_label))
            .filter(other_label__isnull=False)
            .exclude(predicted_label=F("other_label"))
        )
        return queryset.filter(pk__in=differ.values("face_id"))

    def _snapshot_condition(self, *, model_version, raw, values, errors) -> Q | None:
        """The `model_*` filters as one condition on the version's predictions (face ids from its
        snapshot), or None when none is set."""
        wanted = {k: raw.get(k, "").strip() for k in SNAPSHOT_FILTERS if raw.get(k, "").strip()}
        if not wanted:
            return None
        snapshot = snapshot_faces(model_version=model_version)
        if snapshot is None:
            errors.setdefault(next(iter(wanted)), []).append(
                f"Version {model_version.number} has no snapshot of the faces it was trained and tested on, "
                "so its splits and labels at training time are unknown."
            )
            return Q(pk__in=[])
        split = wanted.get("model_split")
        if split is not None:
            values["model_split"] = split
            if split not in ("train", "val", "test"):
                errors.setdefault("model_split", []).append(f"Unknown split “{split}”: use train, val or test.")
        label = wanted.get("model_label")
        if label is not None:
            values["model_label"] = label
            if label not in model_version.classes:
                errors.setdefault("model_label", []).append(
                    f"Unknown label “{label}”: version {model_version.number} knows {', '.join(model_version.classes)}."
                )
        kind = value = None
        if "model_slice" in wanted:
            values["model_slice"] = wanted["model_slice"]
            kind, _, value = wanted["model_slice"].partition(":")
            wanted_slice = f"{kind}={value}"
            if not value:
                errors.setdefault("model_slice", []).append(
                    f"“{wanted['model_slice']}” is not a slice: use <kind>:<value>, e.g. quality:blurry."
                )
        correct = wanted.get("model_correct")
        if correct is not None:
            if correct not in ("1", "0", "true", "false"):
                errors.setdefault("model_correct", []).append(
                    f"“{correct}” is not valid for model_correct: use 1 or 0."
                )
                correct = None
            else:
                correct = correct in ("1", "true")
                values["model_correct"] = "1" if correct else "0"
        by_label: dict[str, list[int]] = {}
        for face_id, (face_label, face_split, slices) in snapshot.items():
            if split is not None and face_split != split:
                continue
            if label is not None and face_label != label:
                continue
            if kind is not None and wanted_slice not in slices.split(";"):
                continue
            by_label.setdefault(face_label, []).append(face_id)
        if correct is None:
            return _face_in([f for ids in by_label.values() for f in ids])
        # Right or wrong against the label the version was tested with, not today's label.
        condition = Q(pk__in=[])
        for face_label, ids in by_label.items():
            if correct:
                condition |= _face_in(ids) & Q(predicted_label=face_label)
            else:
                condition |= _face_in(ids) & ~Q(predicted_label=face_label)
        return condition

    def describe(self, *, values: dict, model_version) -> list[str]:
        """The prediction filters in words, for the grid's "showing faces ..." line."""
        if model_version is None:
            return []
        name = f"v{model_version.number}"
        words = []
        if values.get("model_split"):
            words.append(f"in {name}'s {values['model_split']} split")
        if values.get("model_label"):
            words.append(f"labelled {values['model_label']} when {name} was trained")
        if values.get("model_slice"):
            kind, _, value = values["model_slice"].partition(":")
            words.append(f"{kind.replace('_', ' ')} {value} (as {name} was evaluated)")
        if values.get("predicted"):
            words.append(f"predicted {values['predicted']} by {name}")
        for key, text in CONF_WORDS.items():
            if values.get(key) not in (None, ""):
                words.append(f"{name}'s confidence {text} {values[key]}")
        if values.get("differs_from"):
            other = ModelVersion.objects.filter(pk=values["differs_from"]).only("number").first()
            if other is not None:
                words.append(f"{name} and v{other.number} predict differently")
        if values.get("model_correct"):
            words.append(f"{name} right" if values["model_correct"] == "1" else f"{name} wrong")
        if values.get("disagrees"):
            words.append(
                f"{name} disagrees with the current label"
                if values["disagrees"] == "1"
                else f"{name} agrees or no label"
            )
        if words and not values.get("model"):
            words[0] += " (the active version)"
        return words


PREDICTION_FILTERS = PredictionFilters()
