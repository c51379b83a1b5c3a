"""The grid's and the API's prediction filters, plugged into labeling's `FaceFilterSet` (labeling
never imports training; training/apps.py registers `PREDICTION_FILTERS`): `model` (a version id,
default the dataset's active one), `predicted`, `min_conf` / `max_conf`, `disagrees` and the
`confidence` sort."""

from __future__ import annotations

from django.db.models import F, FilteredRelation, Q

from labeling.filters import Narrowing, NumberFilter, TextFilter
from training.models import ModelVersion, Prediction

CONF = (("min_conf", "confidence__gte"), ("max_conf", "confidence__lte"))


class PredictionFilters:
    sorts = ("confidence",)

    def filters(self) -> dict:
        return {
            "model": NumberFilter(
                method="filter_nothing", integer=True, label="model version id (default: the active one)"
            ),
            "predicted": TextFilter(method="filter_nothing", label="predicted label"),
            "min_conf": NumberFilter(method="filter_nothing", label="model confidence at least"),
            "max_conf": NumberFilter(method="filter_nothing", label="model confidence at most"),
            "disagrees": TextFilter(
                method="filter_nothing", label="1: the model disagrees with the label; 0: it does not"
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
        wants_prediction = any(raw.get(k) for k in ("predicted", "disagrees", "min_conf", "max_conf"))
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
        unsorted = queryset
        matching = queryset
        if lookups:
            matching = queryset.filter(
                pk__in=Prediction.objects.filter(model_version=model_version, **lookups).values("face_id")
            )

        def by_confidence(desc: bool):
            if lookups:
                # Every face shown has a matching prediction, so an inner join that can walk the
                # (model_version, disagrees, -confidence) index in order and stop after one page.
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


PREDICTION_FILTERS = PredictionFilters()
