"""The faces' filters: one django-filter `FaceFilterSet` read by the grid (its URL), the faces API
endpoint (its query string), bulk changes over "all N matching" and the OpenAPI schema, so all of
them select the same faces with the same parameters.

Parameters: label, split, batch, file, outcome, excluded, identity (a cluster of the identities
page), the quality bounds (min_size ... max_score,
signed yaw min_yaw / max_yaw, and exclusive lower bounds size_above ... score_above for histogram bars),
`m_<key>` / `m_<key>_min` / `m_<key>_max` on the photo's metadata, and `sort`. Apps above labeling
add their own filters and sorts with `register_face_filters` (training adds the prediction
filters model, predicted, disagrees, min_conf, max_conf and the `confidence` sort) without
labeling importing them.

Nonsense values are errors (per parameter), and so are unknown parameters, so a typo is never
silently ignored; a caller must not act on a filter with errors."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Abs
from django.http import QueryDict

from curator.models import Dataset, Face, ImportBatch, SourceImage

LABEL_STATES = ("unlabelled", "labelled", "unsure", "excluded", "included")
OUTCOMES = {"single": "one face in the photo", "several": "several faces in the photo", "no_face": "no face detected"}
QUALITY = {
    # parameter -> (lookup, description)
    "min_size": ("size_px__gte", "size at least (px)"),
    "max_size": ("size_px__lte", "size at most (px)"),
    "min_sharpness": ("sharpness__gte", "sharpness at least"),
    "max_sharpness": ("sharpness__lte", "sharpness at most"),
    "max_abs_yaw": ("abs_yaw__lte", "|yaw| at most (°)"),
    "min_abs_yaw": ("abs_yaw__gte", "|yaw| at least (°)"),
    "min_score": ("detector_score__gte", "detector score at least"),
    "max_score": ("detector_score__lte", "detector score at most"),
    # Signed yaw and exclusive lower bounds: a histogram bar is "above its left edge, at most its
    # right edge" (the first one "at least"), so neighbouring bars never share a face.
    "min_yaw": ("yaw__gte", "yaw at least (°)"),
    "max_yaw": ("yaw__lte", "yaw at most (°)"),
    "size_above": ("size_px__gt", "size above (px)"),
    "sharpness_above": ("sharpness__gt", "sharpness above"),
    "yaw_above": ("yaw__gt", "yaw above (°)"),
    "score_above": ("detector_score__gt", "detector score above"),
}
SORTS = {
    "id": "id",
    "size": "size_px",
    "sharpness": "sharpness",
    "yaw": "abs_yaw",
    "score": "detector_score",
    "label": "label",
    "split": "split",
    "file": "image__original_name",
    "updated": "updated_at",
}
NULLABLE_SORTS = {"sharpness", "yaw", "score"}
META_KEY = re.compile(r"^m_([A-Za-z0-9_]{1,40}?)(_min|_max)?$")
META_SORT = re.compile(r"m_([A-Za-z0-9_]{1,40})")
# Parameters the grid and the API send along that are not filters (pagination).
# Grid parameters that are not filters: paging and the layout (panels shown, tile size).
# `after` / `before`: the face a next / previous link continues from (keyset pagination).
NOT_FILTERS = {"page", "per_page", "panels", "size", "after", "before"}
# Parameters the grid's filter form has an input for (templates/labeling/grid.html).
FORM_PARAMS = {
    *("label", "split", "batch", "file", "outcome", "min_size", "min_sharpness", "max_abs_yaw", "min_score"),
    *("model", "predicted", "min_conf", "max_conf", "disagrees", "sort", "per_page"),
}


@dataclass
class FaceFilter:
    """A parsed filter: the sorted queryset, the same faces unsorted (`matching`, for counts and
    bulk actions), the clean values (for the form and links) and errors (`field_errors` by
    parameter, `errors` as one list of sentences)."""

    queryset: QuerySet
    matching: QuerySet
    values: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    model_version: object | None = None
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    # The active filter in words ("labelled female", "sharpness above 50"...), so a page reached
    # from a link (a plot's bar, a count) says why these faces are shown.
    description: list[str] = field(default_factory=list)

    @property
    def hidden_values(self) -> list[tuple[str, str]]:
        """Values the grid's form has no input for (bounds set by a plot's link, the version's
        snapshot filters...): the grid carries them as hidden inputs so filtering again keeps them."""
        return [
            (k, str(v))
            for k, v in self.values.items()
            if k not in FORM_PARAMS and not k.startswith("m_") and v not in (None, "")
        ]

    @property
    def querystring(self) -> str:
        q = QueryDict(mutable=True)
        for key, value in self.values.items():
            if value not in (None, ""):
                q[key] = str(value)
        return q.urlencode()


# --- The hook for apps above labeling -------------------------------------------------------------


@dataclass
class Narrowing:
    """What a filter extension did: `matching` (the faces left, unsorted), the model version it
    chose (the grid shows its predictions) and, per sort name it owns, a function of `descending`
    that answers the sorted queryset (None: it cannot sort now, the default sort is used)."""

    matching: QuerySet
    model_version: Any = None
    orders: dict[str, Callable[[bool], QuerySet] | None] = field(default_factory=dict)


class FaceFilterExtension(Protocol):
    sorts: tuple[str, ...]

    def filters(self) -> dict[str, django_filters.Filter]:
        """The parameters it adds (declared filters: the form and the OpenAPI schema read them)."""

    def narrow(
        self, *, dataset: Dataset, queryset: QuerySet, data: dict, raw, sort: str, values: dict, errors: dict
    ) -> Narrowing:
        """Apply its filters to `queryset` (`data`: the cleaned values, `raw`: the query), add the
        values to keep to `values` and problems to `errors` ({parameter: [message]})."""

    # Optional: `describe(*, values, model_version) -> list[str]`, its filters in words for the
    # grid's "Showing faces ..." line (training's prediction filters have one).


_EXTENSIONS: list[FaceFilterExtension] = []


def register_face_filters(extension: FaceFilterExtension) -> None:
    """Called by an app above labeling in its AppConfig.ready() (training registers the
    prediction filters)."""
    if extension not in _EXTENSIONS:
        _EXTENSIONS.append(extension)


def sort_names() -> list[str]:
    return [*SORTS, *(name for ext in _EXTENSIONS for name in ext.sorts)]


# --- Fields and filters ---------------------------------------------------------------------------


class NumberField(forms.Field):
    """A number in a query string, with the message the grid has always shown."""

    def __init__(self, *, integer: bool = False, **kwargs):
        self.integer = integer
        super().__init__(**kwargs)

    def to_python(self, value):
        if value in ("", None):
            return None
        try:
            number = int(value) if self.integer else float(value)
        except (TypeError, ValueError):
            raise ValidationError(
                "“%(value)s” is not a number ({name}).", code="invalid", params={"value": value}
            ) from None
        if not self.integer and not math.isfinite(number):
            raise ValidationError(
                "“%(value)s” is not a usable number ({name}).", code="invalid", params={"value": value}
            )
        return number


class NumberFilter(django_filters.Filter):
    field_class = NumberField


class TextField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)


class TextFilter(django_filters.Filter):
    field_class = TextField


def _quality(name: str, lookup: str, text: str) -> NumberFilter:
    return NumberFilter(field_name=lookup.rsplit("__", 1)[0], lookup_expr=lookup.rsplit("__", 1)[1], label=text)


class FaceFilterSet(django_filters.FilterSet):
    """The faces of one dataset. Use `face_filter()` for the parsed result; `.qs` is the sorted
    queryset. Every filter is skipped when its parameter is empty."""

    label = TextFilter(method="filter_label", label="a class, or unlabelled / labelled / unsure / excluded / included")
    split = TextFilter(method="filter_split", label="train, val, test or none")
    batch = NumberFilter(method="filter_batch", integer=True, label="import batch id")
    file = TextFilter(method="filter_file", label="part of the source file name")
    outcome = TextFilter(method="filter_outcome", label="single, several or no_face")
    excluded = TextFilter(method="filter_excluded", label="1: excluded faces only; 0: included faces only")
    identity = NumberFilter(
        method="filter_identity", integer=True, label="identity cluster number (the identities page)"
    )
    min_size = _quality("min_size", *QUALITY["min_size"])
    max_size = _quality("max_size", *QUALITY["max_size"])
    min_sharpness = _quality("min_sharpness", *QUALITY["min_sharpness"])
    max_sharpness = _quality("max_sharpness", *QUALITY["max_sharpness"])
    max_abs_yaw = _quality("max_abs_yaw", *QUALITY["max_abs_yaw"])
    min_abs_yaw = _quality("min_abs_yaw", *QUALITY["min_abs_yaw"])
    min_score = _quality("min_score", *QUALITY["min_score"])
    max_score = _quality("max_score", *QUALITY["max_score"])
    min_yaw = _quality("min_yaw", *QUALITY["min_yaw"])
    max_yaw = _quality("max_yaw", *QUALITY["max_yaw"])
    size_above = _quality("size_above", *QUALITY["size_above"])
    sharpness_above = _quality("sharpness_above", *QUALITY["sharpness_above"])
    yaw_above = _quality("yaw_above", *QUALITY["yaw_above"])
    score_above = _quality("score_above", *QUALITY["score_above"])
    sort = TextFilter(method="filter_nothing", label="a sort key or m_<metadata key>, prefix - for descending")

    class Meta:
        model = Face
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, dataset: Dataset, **kwargs):
        self.dataset = dataset
        self.problems: dict[str, list[str]] = {}
        self.values: dict = {}
        data = data if data is not None else QueryDict()
        if queryset is None:
            queryset = Face.objects.filter(dataset=dataset)
        super().__init__(data, queryset, **kwargs)
        for ext in _EXTENSIONS:
            self.filters.update(ext.filters())
        # Metadata filters are per key: one filter for each m_<key> the query names.
        for key in data:
            match = META_KEY.match(key)
            if key in self.filters or key in NOT_FILTERS:
                continue
            if not match:
                self.problems.setdefault(key, []).append(f"Unknown filter “{key}”.")
                continue
            name, bound = match.group(1), match.group(2)
            if bound:
                self.filters[key] = NumberFilter(
                    field_name=f"image__metadata__{name}", lookup_expr="gte" if bound == "_min" else "lte"
                )
            else:
                self.filters[key] = TextFilter(method="filter_metadata", field_name=f"image__metadata__{name}")
        for name, flt in self.filters.items():
            flt.parent = self
            flt.model = Face
            if getattr(flt, "field_name", None) is None:
                flt.field_name = name

    # -- single filters (values recorded for the grid's form and links)

    def filter_nothing(self, queryset, name, value):
        return queryset

    def filter_label(self, queryset, name, value):
        classes = self.dataset.classes
        self.values["label"] = value
        if value in classes:
            return queryset.filter(label=value)
        lookups = {
            "unlabelled": Q(label=""),
            "labelled": ~Q(label=""),
            "unsure": Q(is_unsure=True),
            "excluded": Q(is_excluded=True),
            "included": Q(is_excluded=False),
        }
        if value not in lookups:
            self._problem(name, f"Unknown label “{value}”: use one of {', '.join([*classes, *LABEL_STATES])}.")
            return queryset
        return queryset.filter(lookups[value])

    def filter_split(self, queryset, name, value):
        self.values["split"] = value
        if value in ("train", "val", "test"):
            return queryset.filter(split=value)
        if value == "none":
            return queryset.filter(split="")
        self._problem(name, f"Unknown split “{value}”: use train, val, test or none.")
        return queryset

    def filter_batch(self, queryset, name, value):
        if not ImportBatch.objects.filter(dataset=self.dataset, pk=value).exists():
            self._problem(name, f"Import batch {value} is not a batch of this dataset.")
        self.values["batch"] = value
        return queryset.filter(image__batch_id=value)

    def filter_file(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        self.values["file"] = value
        return queryset.filter(image__original_name__icontains=value)

    def filter_outcome(self, queryset, name, value):
        self.values["outcome"] = value
        lookups = {
            "single": Q(image__face_count=1, whole_image=False),
            "several": Q(image__face_count__gt=1),
            "no_face": Q(whole_image=True),
        }
        if value not in lookups:
            self._problem(name, f"Unknown photo outcome “{value}”: use single, several or no_face.")
            return queryset
        return queryset.filter(lookups[value])

    def filter_excluded(self, queryset, name, value):
        # With `label`, the curation page's "included female faces of the train split" counts.
        if value not in ("1", "0", "true", "false"):
            self._problem(name, f"“{value}” is not valid for excluded: use 1 or 0.")
            return queryset
        self.values["excluded"] = "1" if value in ("1", "true") else "0"
        return queryset.filter(is_excluded=value in ("1", "true"))

    def filter_identity(self, queryset, name, value):
        from embeddings.models import FaceIdentity

        # Cluster numbers change when the clusters are computed again: an old link must say so
        # rather than show an empty grid.
        if not FaceIdentity.objects.filter(dataset=self.dataset, cluster=value).exists():
            self._problem(
                name,
                f"Identity cluster {value} is not a cluster of this dataset (clusters are renumbered when "
                "they are computed again: open it from the identities page).",
            )
        self.values["identity"] = value
        return queryset.filter(identity__cluster=value)

    def filter_metadata(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        # Metadata values may be stored as numbers or text; match either (`name`: the lookup).
        lookup = name
        try:
            number = int(value)
        except ValueError:
            number = None
        if connection.vendor == "postgresql":
            # Containment (metadata @> {"key": value}), which the GIN index on the photos'
            # metadata answers: an identity among a million photos is found, not scanned for.
            # (The faces are the dataset's already, so the photos need no dataset condition.)
            key = name.rsplit("__", 1)[1]
            photos = SourceImage.objects.filter(metadata__contains={key: value})
            if number is not None:
                photos |= SourceImage.objects.filter(metadata__contains={key: number})
            return queryset.filter(image__in=photos.values("pk"))
        cond = Q(**{lookup: value})
        if number is not None:
            cond |= Q(**{lookup: number})
        return queryset.filter(cond)

    def _problem(self, name: str, message: str) -> None:
        self.problems.setdefault(name, []).append(message)

    # -- the whole filter

    def result(self) -> FaceFilter:
        form = self.form
        form.is_valid()
        errors: dict[str, list[str]] = {}
        for name, messages in form.errors.items():
            errors[name] = [m.replace("{name}", name) for m in messages]
        data = {k: v for k, v in form.cleaned_data.items() if k not in errors}
        raw = self.data
        sort = raw.get("sort", "") or "id"
        qs = self.queryset
        if any(data.get(k) is not None for k in ("max_abs_yaw", "min_abs_yaw")) or sort.lstrip("-") == "yaw":
            qs = qs.annotate(abs_yaw=Abs("yaw"))
        ext_names = {n for ext in _EXTENSIONS for n in ext.filters()}
        for name, value in data.items():
            if name in ext_names or value in (None, ""):
                continue
            qs = self.filters[name].filter(qs, value)
            if name in QUALITY:
                self.values[name] = raw.get(name)
            elif META_KEY.match(name):
                self.values[name] = raw.get(name).strip()
        for name, messages in self.problems.items():
            errors.setdefault(name, []).extend(messages)

        matching, model_version, orders = qs, None, {}
        built_on = {}  # sort name -> the faces its extension's order was built on
        for ext in _EXTENSIONS:
            narrowing = ext.narrow(
                dataset=self.dataset,
                queryset=matching,
                data=data,
                raw=raw,
                sort=sort,
                values=self.values,
                errors=errors,
            )
            matching = narrowing.matching
            model_version = narrowing.model_version if narrowing.model_version is not None else model_version
            orders.update(narrowing.orders)
            built_on.update(dict.fromkeys(narrowing.orders, matching))

        name = sort.lstrip("-")
        meta_sort = META_SORT.fullmatch(name)
        if name not in SORTS and name not in orders and not meta_sort:
            errors.setdefault("sort", []).append(
                f"Cannot sort by “{sort}”: use one of {', '.join(sort_names())} or m_<metadata key> "
                "(prefix - for descending)."
            )
            name, sort = "id", "id"
        desc = sort.startswith("-")
        ordered = orders[name](desc) if name in orders and orders[name] is not None else None
        if ordered is not None and built_on.get(name) is not matching:
            # A later extension narrowed the faces after this sort was built (e.g. similar_to and
            # the confidence sort): keep only the faces that match every filter.
            ordered = ordered.filter(pk__in=matching.values("pk"))
        if ordered is None:
            if name in orders:
                name, sort = "id", "id"
            column = f"image__metadata__{meta_sort.group(1)}" if meta_sort else SORTS[name]
            # NULLS LAST only where a column can be null: on the others it would keep PostgreSQL
            # from reading the (dataset, column) index backwards for a descending sort.
            if name in NULLABLE_SORTS or meta_sort:
                order = F(column).desc(nulls_last=True) if desc else F(column).asc(nulls_last=True)
            else:
                order = F(column).desc() if desc else F(column).asc()
            ordered = matching.order_by(order, "-id" if desc else "id")
        if sort != "id":
            self.values["sort"] = sort
        description = describe_filter(dataset=self.dataset, values=self.values)
        for ext in _EXTENSIONS:
            if hasattr(ext, "describe"):  # optional: extensions without words still work
                description += ext.describe(values=self.values, model_version=model_version)
        return FaceFilter(
            queryset=ordered,
            matching=matching,
            values=self.values,
            errors=[m for messages in errors.values() for m in messages],
            model_version=model_version,
            field_errors=errors,
            description=description,
        )

    @property
    def qs(self):
        return self.result().queryset


LABEL_WORDS = {
    "unlabelled": "unlabelled",
    "labelled": "labelled (any class)",
    "unsure": "marked unsure",
    "excluded": "excluded",
    "included": "included (not excluded)",
}


def describe_filter(*, dataset: Dataset, values: dict) -> list[str]:
    """labeling's part of the active filter in words, one phrase per parameter set."""
    words = []
    label = values.get("label")
    if label:
        words.append(f"labelled {label}" if label in dataset.classes else LABEL_WORDS.get(label, f"label {label}"))
    split = values.get("split")
    if split:
        words.append("without a split" if split == "none" else f"in the {split} split")
    if values.get("batch") is not None:
        # The parameter is the batch's id; people know an import by its number in the dataset.
        number = (
            ImportBatch.objects.filter(dataset=dataset, pk=values["batch"]).values_list("number", flat=True).first()
        )
        words.append(f"from import #{number if number is not None else values['batch']}")
    if values.get("file"):
        words.append(f"file name contains “{values['file']}”")
    if values.get("outcome") in OUTCOMES:
        words.append(OUTCOMES[values["outcome"]])
    if values.get("excluded"):
        words.append("excluded" if values["excluded"] == "1" else "included (not excluded)")
    if values.get("identity") is not None:
        words.append(f"of identity cluster {values['identity']}")
    for name, (_, text) in QUALITY.items():
        if values.get(name) not in (None, ""):
            words.append(f"{text.split(' (')[0]} {values[name]}{_unit(text)}")
    for name, value in values.items():
        match = META_KEY.match(name)
        if match and value not in (None, ""):
            op = {"_min": "≥", "_max": "≤"}.get(match.group(2) or "", "=")
            words.append(f"{match.group(1)} {op} {value}")
    return words


def _unit(text: str) -> str:
    """The unit (" px", "°") of a QUALITY description such as "size at least (px)"."""
    if "(" not in text:
        return ""
    unit = text.rsplit("(", 1)[1].rstrip(")")
    return unit if unit == "°" else f" {unit}"


def face_filter(*, dataset: Dataset, params) -> FaceFilter:
    """Parse grid/API filter parameters (a QueryDict or a dict) into a `FaceFilter`."""
    if not isinstance(params, QueryDict):
        q = QueryDict(mutable=True)
        q.update(params)
        params = q
    return FaceFilterSet(params, dataset=dataset).result()


def face_filter_parameters() -> list:
    """The filter parameters for the OpenAPI schema, from the FilterSet (and its extensions)."""
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import OpenApiParameter

    declared = {**FaceFilterSet.base_filters}
    for ext in _EXTENSIONS:
        declared.update(ext.filters())
    params = []
    for name, flt in declared.items():
        kind = OpenApiTypes.STR
        if isinstance(flt, NumberFilter):
            kind = OpenApiTypes.INT if flt.extra.get("integer") else OpenApiTypes.NUMBER
        text = flt.label or ""
        if name == "sort":
            text = f"one of {', '.join(sort_names())} or m_<metadata key>, prefix - for descending"
        params.append(OpenApiParameter(name, kind, description=text))
    params.append(
        OpenApiParameter(
            "m_<key>",
            OpenApiTypes.STR,
            description="metadata value, e.g. m_race=2; m_<key>_min / m_<key>_max for ranges, e.g. m_age_min=20",
        )
    )
    return params
