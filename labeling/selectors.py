"""Reads for the grid, the detail panel, the history and curation pages and the API.

The filters themselves (query parameters -> faces) are `labeling.filters.face_filter`, shared by
the grid, bulk actions over "all N matching" and the API.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.core.exceptions import FieldDoesNotExist
from django.core.files.storage import default_storage
from django.db.models import Case, Count, F, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery, Value, When

from curator.models import Dataset, Face, ImportBatch, SourceImage
from curator.storage import storage_listdir
from labeling.extensions import prediction_provider
from labeling.models import BulkAction, LabelEvent

if TYPE_CHECKING:
    from labeling.filters import FaceFilter

PER_PAGE_DEFAULT = 120
PER_PAGE_CHOICES = (60, 120, 240, 480)
# The grid's filter parameters live in labeling/filters.py (a django-filter FilterSet).


TILE_FIELDS = (
    "id",
    "version",
    "label",
    "is_unsure",
    "is_excluded",
    "split",
    "crop",
    "size_px",
    "sharpness",
    "yaw",
    "detector_score",
    "suggested_label",
    "image",
)


def faces_page(
    *, flt: FaceFilter, offset: int, limit: int, after: int | None = None, before: int | None = None
) -> list[Face]:
    """One page of the filter's faces. The page's ids are found first on the bare face table
    (index scans, no joins), then only those rows are read with their photo and prediction.

    With `after` (the last face of the page before) or `before` (the first face of the page
    after) the page is found by keyset, comparing sort keys with that face's, so the grid's
    next/previous links cost the same on page 8,000 of a million faces as on page 2; OFFSET is
    left for a page number typed in (or a face no longer in the filter)."""
    ids = _page_ids_by_keyset(flt.queryset, limit=limit, after=after, before=before)
    if ids is None:
        ids = list(flt.queryset.values_list("pk", flat=True)[offset : offset + limit])
    rows = Face.objects.filter(pk__in=ids).select_related("image").only(*TILE_FIELDS, "image__original_name").in_bulk()
    faces = [rows[i] for i in ids if i in rows]
    faces_attach_predictions(faces=faces, model_version=flt.model_version)
    return faces


def _page_ids_by_keyset(qs, *, limit: int, after: int | None, before: int | None) -> list[int] | None:
    """The ids of the `limit` faces following `after` (or preceding `before`) in the queryset's
    order; None when neither is given, the order cannot be compared key by key, or the face
    named is not in the filter any more (then the caller pages by offset)."""
    anchor = after if after is not None else before
    if anchor is None:
        return None
    keys = _order_keys(qs)
    if keys is None:
        return None
    current = qs.filter(pk=anchor).values_list(*[k[0] for k in keys]).first()
    if current is None:
        return None
    earlier, later = _keyset_conditions(keys, current)
    if after is not None:
        return list(qs.filter(later).values_list("pk", flat=True)[:limit])
    return list(reversed(qs.filter(earlier).reverse().values_list("pk", flat=True)[:limit]))


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def face_tiles(*, faces: list[Face], classes: list[str]) -> list[dict]:
    """What the grid draws per face, prepared in Python: 120 tiles through the template
    language's filters (floatformat, url) cost several times more than these f-strings."""
    from urllib.parse import quote

    from django.urls import reverse

    from curator.colours import class_css

    media = reverse("media", kwargs={"path": "x"})[:-1]
    tiles = []
    for f in faces:
        quality = f"{f.size_px}px · sharpness {_num(f.sharpness, 0)} · yaw {_num(f.yaw, 1)}° · score {_num(f.detector_score, 2)}"
        model = f"model: {f.pred_label} ({f.pred_confidence:.2f})" if getattr(f, "pred_label", None) else ""
        css = "tile" + (" excluded" if f.is_excluded else "") + (" unsure" if f.is_unsure else "")
        suggestion = face_suggestion(face=f)
        tiles.append(
            {
                "id": f.pk,
                "version": f.version,
                "label": f.label,
                "split": f.split,
                "css": css,
                "badge": class_css(classes, f.label),
                "src": media + quote(f.crop, safe="/"),
                "title": f"face {f.pk} · {f.image.original_name}\n{quality}" + (f"\n{model}" if model else ""),
                "quality": quality + (f" · {model}" if model else ""),
                "suggestion": suggestion["text"] if suggestion else "",
                "suggestion_css": class_css(classes, suggestion["label"]) if suggestion else "",
                # Descriptor distance to the face of a `similar_to` grid (labeling.similarity).
                "distance": _num(getattr(f, "similar_distance", None), 3),
            }
        )
    return tiles


def face_suggestion(*, face: Face, model_version=None) -> dict | None:
    """What to show an unlabelled face as a suggestion, never as its label: the prediction of the
    grid's model version (`pred_label`/`pred_confidence` attached by faces_attach_predictions, or
    read here for `model_version`), else the label a model suggested when the photo was added
    through the predict page (`Face.suggested_label`). None for a labelled face."""
    if face.label:
        return None
    label, confidence = getattr(face, "pred_label", None), getattr(face, "pred_confidence", None)
    if label is None and model_version is not None:
        row = prediction_provider().predictions(model_version=model_version, face_ids=[face.pk]).get(face.pk)
        if row:
            label, confidence = row
    if label:
        version = f"v{model_version.number}" if model_version is not None else "the model"
        return {
            "label": label,
            "confidence": confidence,
            "text": f"suggested: {label} {confidence:.2f}",
            "source": version,
        }
    if face.suggested_label:
        return {
            "label": face.suggested_label,
            "confidence": None,
            "text": f"suggested: {face.suggested_label}",
            "source": "the model that predicted the photo",
        }
    return None


def faces_attach_predictions(*, faces: list[Face], model_version) -> None:
    """Set `pred_label` / `pred_confidence` on each face from `model_version` (None when absent)."""
    found = {}
    if model_version is not None and faces:
        found = prediction_provider().predictions(model_version=model_version, face_ids=[f.pk for f in faces])
    for face in faces:
        face.pred_label, face.pred_confidence = found.get(face.pk, (None, None))


# A text column with at most this many distinct values (in the sample) is offered as a choice.
METADATA_MAX_CHOICES = 30


def metadata_columns(*, dataset: Dataset, sample: int = 300) -> list[dict]:
    """Metadata columns of this dataset's photos (from a sample): [{"name", "kind", "choices"}],
    kind "number" (every sampled value is a number: the grid offers a min/max range), "choice"
    (text with few distinct values: a select of them) or "text" (free text: an exact match).
    Cached for a few minutes: the columns only change with an import, and the grid asks on
    every page."""
    key = f"labeling:metadata-columns:{dataset.pk}"
    columns = cache.get(key)
    if columns is None:
        values: dict[str, set] = {}
        rows = SourceImage.objects.filter(dataset=dataset).exclude(metadata={}).values_list("metadata", flat=True)
        for meta in rows[:sample]:
            for name, value in meta.items():
                if re.fullmatch(r"[A-Za-z0-9_]{1,40}", name) and value not in (None, ""):
                    values.setdefault(name, set()).add(value)
        columns = []
        for name in sorted(values):
            found = values[name]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in found):
                columns.append({"name": name, "kind": "number", "choices": []})
            elif len(found) <= METADATA_MAX_CHOICES:
                columns.append({"name": name, "kind": "choice", "choices": sorted(str(v) for v in found)})
            else:
                columns.append({"name": name, "kind": "text", "choices": []})
        if columns:  # an empty answer is not kept: the first import should show its columns at once
            cache.set(key, columns, 300)
    return columns


def metadata_keys(*, dataset: Dataset, sample: int = 300) -> list[str]:
    """The names of the metadata columns (see metadata_columns)."""
    return [c["name"] for c in metadata_columns(dataset=dataset, sample=sample)]


def face_detail(*, dataset: Dataset, face_id: int, model_version=None) -> dict | None:
    """Everything the detail panel shows. `model_version` is the version whose suggestion an
    unlabelled face shows (the grid's chosen version; the dataset's active one when None)."""
    face = Face.objects.filter(dataset=dataset, pk=face_id).select_related("image", "image__batch").first()
    if face is None:
        return None
    provider = prediction_provider()
    if model_version is None:
        model_version = provider.active_version(dataset=dataset)
    return {
        "face": face,
        "image": face.image,
        "siblings": list(Face.objects.filter(image=face.image).order_by("index")),
        # Landmark dots scale with the photo so they stay visible on large originals.
        "lm_radius": round(max(1.0, max(face.image.width, face.image.height) / 250), 1),
        "history": list(LabelEvent.objects.filter(face=face).select_related("user", "action").order_by("-id")[:50]),
        "suggestion": face_suggestion(face=face, model_version=model_version),
        "predictions": provider.face_history(face=face, limit=10),
    }


def bulk_actions(*, dataset: Dataset) -> QuerySet[BulkAction]:
    return (
        BulkAction.objects.filter(dataset=dataset)
        .select_related("user", "reverts")
        .annotate(reverted_by_id=Subquery(BulkAction.objects.filter(reverts=OuterRef("pk")).values("pk")[:1]))
        .order_by("-created_at", "-id")
    )


def dataset_overview(*, dataset: Dataset) -> dict:
    from urllib.parse import urlencode

    faces = Face.objects.filter(dataset=dataset)
    included = faces.filter(is_excluded=False)
    table = defaultdict(lambda: defaultdict(int))
    for label, split, n in included.values_list("label", "split").annotate(n=Count("id")).order_by():
        table[label or "unlabelled"][split or "none"] += n
    splits = ["train", "val", "test", "none"]
    labels = [*dataset.classes, "unlabelled"] + sorted(set(table) - {*dataset.classes, "unlabelled"})
    rows = [(label, [table[label][s] for s in splits], sum(table[label].values())) for label in labels]
    totals = [sum(table[label][s] for label in labels) for s in splits]
    images = SourceImage.objects.filter(dataset=dataset)
    outcomes = {
        "photos": images.count(),
        "single": images.filter(face_count=1).count(),
        "several": images.filter(face_count__gt=1).count(),
        "no_face": images.filter(status=SourceImage.Status.NO_FACE).count(),
        "whole_image": faces.filter(whole_image=True).count(),
        "errors": images.filter(status=SourceImage.Status.ERROR).count(),
        "pending": images.filter(status=SourceImage.Status.PENDING).count(),
    }

    # The grid query of every count (included faces, as the table counts them); a label that is
    # no longer a class of the dataset cannot be filtered on, so its counts are not links.
    def query(label: str | None, split: str | None) -> str | None:
        if label is not None and label not in dataset.classes and label != "unlabelled":
            return None
        params = {"label": label, "split": split, "excluded": "0"}
        return urlencode({k: v for k, v in params.items() if v is not None})

    linked_rows = [
        (label, [(n, query(label, s)) for n, s in zip(counts, splits, strict=True)], total, query(label, None))
        for label, counts, total in rows
    ]
    return {
        "splits": splits,
        "rows": rows,
        "linked_rows": linked_rows,
        "linked_totals": [(n, query(None, s)) for n, s in zip(totals, splits, strict=True)],
        "total_query": query(None, None),
        "totals": totals,
        "total": sum(totals),
        "outcomes": outcomes,
        "faces": faces.count(),
        "excluded": faces.filter(is_excluded=True).count(),
        "unsure": faces.filter(is_unsure=True).count(),
        "small_classes": [
            label for label in dataset.classes if 0 < sum(table[label].values()) < dataset.min_faces_per_class
        ],
    }


def dataset_stamp(*, dataset: Dataset) -> str:
    """Changes whenever faces are added, replaced or deleted (alignment) or any label-state action
    is recorded: the key for caching pages derived from all of a dataset's faces."""
    faces = Face.objects.filter(dataset=dataset).aggregate(n=Count("id"), last=Max("id"))
    action = BulkAction.objects.filter(dataset=dataset).aggregate(last=Max("id"))["last"]
    return f"{dataset.pk}:{faces['n']}:{faces['last']}:{action}"


HISTOGRAM_METRICS = [
    ("size_px", "Size (px)"),
    ("sharpness", "Sharpness (Laplacian variance)"),
    ("yaw", "Yaw (°)"),
    ("detector_score", "Detector score"),
]
HISTOGRAM_BINS = 30
# The grid's range parameters of each metric: (at least, above, at most), see labeling/filters.py.
HISTOGRAM_PARAMS = {
    "size_px": ("min_size", "size_above", "max_size"),
    "sharpness": ("min_sharpness", "sharpness_above", "max_sharpness"),
    "yaw": ("min_yaw", "yaw_above", "max_yaw"),
    "detector_score": ("min_score", "score_above", "max_score"),
}


def histogram_edges(lo: float, hi: float, *, bins: int = HISTOGRAM_BINS, integer: bool = False) -> list[float]:
    """About `bins` bins of a round width (1, 2, 2.5 or 5 times a power of ten; whole numbers for an
    integer metric) from a multiple of that width: the edges read well in a grid URL
    (`sharpness_above=50&max_sharpness=100`). One bin [lo, lo] when every value is the same."""
    import math

    if hi <= lo:
        return [lo, lo]
    raw = (hi - lo) / bins
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    start = math.floor(lo / step) * step
    edges = [round(start + i * step, 10) for i in range(math.ceil((hi - start) / step) + 1)]
    while edges[-1] < hi:  # rounding can leave the largest value past the last edge
        edges.append(round(edges[-1] + step, 10))
    return edges


def _edge(value: float) -> str:
    """An edge as the URL writes it: repr() reads back as the very same float, so the grid
    compares faces with exactly the number the histogram binned them by."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def histogram_bar_query(metric: str, edges: list[float], i: int) -> dict[str, str]:
    """The grid parameters of bar i: the first bar is [e0, e1], the others (e_i, e_i+1], as binned."""
    at_least, above, at_most = HISTOGRAM_PARAMS[metric]
    lower = at_least if i == 0 else above
    return {lower: _edge(edges[i]), at_most: _edge(edges[i + 1])}


def quality_histogram_counts(*, dataset: Dataset) -> list[dict]:
    """Per metric: bin edges and included/excluded counts, binned by the database (one GROUP BY per
    metric, a CASE over the edges: the same comparisons the grid's range filters make, so a bar's
    count is the count of the grid it links to) so 100,000 faces never travel to Python."""
    faces = Face.objects.filter(dataset=dataset)
    bounds = faces.aggregate(
        **{f"{m}_lo": Min(m) for m, _ in HISTOGRAM_METRICS}, **{f"{m}_hi": Max(m) for m, _ in HISTOGRAM_METRICS}
    )
    out = []
    for metric, title in HISTOGRAM_METRICS:
        lo, hi = bounds[f"{metric}_lo"], bounds[f"{metric}_hi"]
        if lo is None:
            out.append({"metric": metric, "title": title, "edges": [], "included": [], "excluded": []})
            continue
        edges = histogram_edges(float(lo), float(hi), integer=metric == "size_px")
        bins = len(edges) - 1
        bucket = Case(
            *(When(**{f"{metric}__lte": edge}, then=Value(i)) for i, edge in enumerate(edges[1:-1])),
            default=Value(bins - 1),
            output_field=IntegerField(),
        )
        rows = (
            faces.filter(**{f"{metric}__isnull": False})
            .annotate(bucket=bucket)
            .values_list("bucket", "is_excluded")
            .annotate(n=Count("id"))
            .order_by()
        )
        included, excluded = [0] * bins, [0] * bins
        for b, is_excluded, n in rows:
            (excluded if is_excluded else included)[int(b)] += n
        out.append({"metric": metric, "title": title, "edges": edges, "included": included, "excluded": excluded})
    return out


def quality_histograms_svg(*, dataset: Dataset) -> list[tuple[str, str]]:
    """One small SVG histogram per quality metric (included vs excluded faces stacked), drawn
    with matplotlib's SVG backend (no display needed) and cached until the dataset changes.
    Every bar segment is a link (matplotlib's set_url: an <a> around the bar in the SVG, which
    the page inlines) to the grid showing exactly its faces: the bar's range, included or excluded."""
    key = f"labeling:histograms:v2:{dataset_stamp(dataset=dataset)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    from urllib.parse import urlencode

    from django.urls import reverse
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    from curator.plotting import svg_presentation  # also sets Agg, and plain text

    grid = reverse("labeling:grid", kwargs={"dataset_id": dataset.pk})
    out = []
    for h in quality_histogram_counts(dataset=dataset):
        fig = Figure(figsize=(4.2, 2.4), dpi=72)
        ax = fig.subplots()
        if h["edges"]:
            edges = h["edges"]
            lefts = edges[:-1]
            width = (edges[1] - edges[0]) or 1.0
            for state, heights, bottom, color in (
                ("included", h["included"], [0] * len(lefts), "#2f6fed"),
                ("excluded", h["excluded"], h["included"], "#c4320a"),
            ):
                bars = ax.bar(lefts, heights, width=width, align="edge", bottom=bottom, color=color, label=state)
                for i, bar in enumerate(bars):
                    if heights[i]:
                        query = {**histogram_bar_query(h["metric"], edges, i), "label": state}
                        bar.set_url(f"{grid}?{urlencode(query)}")
                        bar.set_gid(f"bar-{h['metric']}-{state}-{i}")
            ax.legend(fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(h["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        fig.tight_layout()
        buf = io.StringIO()
        # Text as <text>, not glyph outlines: a tenth of the size, and selectable.
        with rc_context({"svg.fonttype": "none"}):
            fig.savefig(buf, format="svg")
        svg = svg_presentation(buf.getvalue())  # the page inlines it under a CSP without inline styles
        # Links open in this tab (matplotlib writes target="_blank").
        out.append((h["title"], svg[svg.index("<svg") :].replace(' target="_blank"', "")))
    cache.set(key, out, 3600)
    return out


# --- Near-duplicates ------------------------------------------------------------------------------


def connected_groups(ids, pairs) -> list[list[int]]:
    """The connected components of the graph of `ids` joined by `pairs` (scipy's), as sorted lists
    of ids; an id without a pair is a group of its own."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids = sorted(set(ids) | {x for pair in pairs for x in pair})
    if not ids:
        return []
    position = {x: i for i, x in enumerate(ids)}
    rows = np.array([position[a] for a, _ in pairs], dtype=np.int64)
    cols = np.array([position[b] for _, b in pairs], dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = defaultdict(list)
    for x, c in zip(ids, component.tolist(), strict=True):
        groups[c].append(x)
    return list(groups.values())


def duplicate_groups(*, dataset: Dataset) -> list[dict]:
    """Groups of near-duplicate faces (embeddings.duplicates: exact file, near-identical region of
    the original photo, same-shot descriptor; complete linkage, so every two faces of a group
    match), with their faces and, for each pair, every distance and which test matched.
    Conflicting labels first, then largest first. The groups are the last ones a worker stored
    (embeddings.duplicate_jobs; [] before the first): never computed in the request. Labels and
    exclusions are today's."""
    from embeddings.duplicate_jobs import duplicates_stored

    stored = duplicates_stored(dataset=dataset)
    if stored is None:
        return []
    groups, pairs = stored
    faces = (
        Face.objects.filter(pk__in=[f for g in groups for f in g])
        .only("id", "dataset", "label", "is_excluded", "crop", "image")
        .in_bulk()
    )
    out = []
    for g in groups:
        members = [faces[f] for f in g if f in faces]
        labels = {m.label for m in members if m.label and not m.is_excluded}
        group_pairs = []
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                e = pairs.get((min(a.pk, b.pk), max(a.pk, b.pk)))
                if e is None:
                    continue
                group_pairs.append(
                    {
                        "a": a,
                        "b": b,
                        "hash_bits": e.hash_bits,
                        "descriptor": None if e.descriptor is None else round(e.descriptor, 3),
                        "exact": e.exact,
                        "tests": e.tests,
                    }
                )
        out.append(
            {
                "faces": members,
                "ids": ",".join(str(m.pk) for m in members),
                "pairs": group_pairs,
                "labels": sorted(labels),
                "conflict": len(labels) > 1,
                "included": sum(1 for m in members if not m.is_excluded),
            }
        )
    out.sort(key=lambda d: (not d["conflict"], -len(d["faces"]), d["faces"][0].pk))
    return out


@dataclass
class SplitGroups:
    groups: list[list[int]]  # sorted by first id
    clusters_not_kept: list[int] = field(default_factory=list)  # sizes of the clusters not kept whole


def face_groups_for_split(*, dataset: Dataset, face_ids: set[int], duplicate_distance: int) -> SplitGroups:
    """Groups that must land in one split: faces of the same photo, of the same known identity
    (`SourceImage.metadata["identity"]`), of the same identity cluster (embeddings: known names
    or dlib's Chinese whispers on the descriptors) and near-duplicates (embeddings.duplicates,
    region hashes within `duplicate_distance` bits). Chained on purpose: here a group is
    everything that must not straddle splits. A cluster computed from the descriptors alone that
    is implausibly large is not kept whole (embeddings.selectors.face_people): its faces keep only
    their other ties (photo, metadata name, duplicates); a named or curator-corrected cluster always is."""
    from embeddings.duplicates import pair_evidence
    from embeddings.selectors import duplicate_records, face_people

    rows = list(Face.objects.filter(pk__in=face_ids).values_list("id", "image_id", "image__metadata__identity"))
    people = face_people(face_ids=face_ids)
    clusters = people.clusters
    pairs: list[tuple[int, int]] = []
    by_key: dict[tuple, int] = {}
    for face_id, image_id, identity in rows:
        cluster = clusters.get(face_id)
        # A face with a cluster follows its cluster, not its photo's metadata name: the cluster
        # holds that name already, and a curator's "different people" may have taken the face
        # out of it (the name would join them again).
        identity = None if cluster is not None else identity
        for key in (("image", image_id), ("identity", identity), ("cluster", cluster)):
            if key[1] in (None, ""):
                continue
            if key in by_key:
                pairs.append((face_id, by_key[key]))
            else:
                by_key[key] = face_id
    records = duplicate_records(dataset=dataset, face_ids=face_ids)
    pairs += list(pair_evidence(records, hash_max_bits=duplicate_distance))
    return SplitGroups(
        groups=sorted(connected_groups(face_ids, pairs), key=lambda g: g[0]),
        clusters_not_kept=people.not_kept,
    )


def export_jobs_unfinished(*, dataset: Dataset) -> list:
    """Exports queued or running (the panel shows their progress), and those failed in the last
    day (it says why)."""
    from datetime import timedelta

    from django.utils import timezone

    from labeling.models import ExportJob

    recent_failure = {"status": ExportJob.FAILED, "finished_at__gte": timezone.now() - timedelta(days=1)}
    jobs = ExportJob.objects.filter(dataset=dataset)
    return list(
        (jobs.filter(status__in=[ExportJob.QUEUED, ExportJob.RUNNING]) | jobs.filter(**recent_failure)).order_by(
            "-created_at", "-id"
        )[:10]
    )


def exports_list(*, dataset: Dataset) -> list[dict]:
    prefix = f"datasets/{dataset.pk}/exports"
    _, files = storage_listdir(prefix)
    out = []
    for name in sorted((f for f in files if f.endswith(".zip")), reverse=True):
        path = f"{prefix}/{name}"
        out.append({"name": name, "path": path, "size": default_storage.size(path)})
    return out


# --- The face page ------------------------------------------------------------------------------


def face_events(*, face: Face, limit: int = 500) -> list[dict]:
    """The face's whole label history, newest first, each change in words."""
    from labeling.services import change_words

    events = LabelEvent.objects.filter(face=face).select_related("user", "action").order_by("-created_at", "-id")
    return [
        {
            "event": e,
            "text": change_words(e.field, e.old_value, e.new_value),
            "who": e.user.username if e.user else "system",
            "action": e.action,
        }
        for e in events[:limit]
    ]


def face_predictions(*, dataset: Dataset, face: Face) -> list[dict]:
    """One row per model version of the dataset (newest first) with this face's prediction, or
    None where that version has not predicted it (e.g. the face was added after it was made)."""
    provider = prediction_provider()
    versions = list(provider.versions(dataset=dataset))
    found = {row["version"].pk: row for row in provider.face_history(face=face, limit=max(10, len(versions)))}
    return [{"version": v, "prediction": found.get(v.pk)} for v in versions]


def face_neighbours(*, dataset: Dataset, face: Face, flt: FaceFilter | None) -> dict:
    """The previous and next face for the face page: in the grid's order when it came with the
    grid's filter, by id otherwise. A face that no longer matches the filter (it was relabelled
    out of it) gets the filter's faces with the nearest ids."""
    if flt is None:
        faces = Face.objects.filter(dataset=dataset)
        return {
            "previous": faces.filter(pk__lt=face.pk).order_by("-id").values_list("pk", flat=True).first(),
            "next": faces.filter(pk__gt=face.pk).order_by("id").values_list("pk", flat=True).first(),
            "position": None,
            "count": None,
            "in_filter": True,
        }
    qs = flt.queryset
    keys = _order_keys(qs)
    current = qs.filter(pk=face.pk).values_list(*[k[0] for k in keys]).first() if keys else None
    if current is None:
        # Out of the filter (relabelled since), or an order this cannot walk: the nearest ids.
        unordered = qs.order_by()
        if keys is None and unordered.filter(pk=face.pk).exists():
            return _neighbours_by_list(qs, face)
        return {
            "previous": unordered.filter(pk__lt=face.pk).order_by("-pk").values_list("pk", flat=True).first(),
            "next": unordered.filter(pk__gt=face.pk).order_by("pk").values_list("pk", flat=True).first(),
            "position": None,
            "count": unordered.count(),
            "in_filter": False,
        }
    # Keyset: the faces just before and after this one in the grid's order, found by comparing
    # sort keys (one indexed query each), not by reading every matching id.
    before, after = _keyset_conditions(keys, current)
    return {
        "previous": qs.filter(before).reverse().values_list("pk", flat=True).first(),
        "next": qs.filter(after).values_list("pk", flat=True).first(),
        "position": qs.filter(before).count() + 1,
        "count": qs.count(),
        "in_filter": True,
    }


def _neighbours_by_list(qs, face) -> dict:
    ids = list(qs.values_list("pk", flat=True))
    i = ids.index(face.pk)
    return {
        "previous": ids[i - 1] if i > 0 else None,
        "next": ids[i + 1] if i + 1 < len(ids) else None,
        "position": i + 1,
        "count": len(ids),
        "in_filter": True,
    }


def _order_keys(qs) -> list[tuple[str, bool, bool]] | None:
    """(field or annotation name, descending, nulls last) of each term of the queryset's order,
    ending with the id; None for an order it cannot read (then the ids are listed)."""
    from django.db import connection
    from django.db.models import F
    from django.db.models.expressions import OrderBy

    keys = []
    for term in qs.query.order_by:
        if isinstance(term, str):
            name, desc, nulls = term.lstrip("-"), term.startswith("-"), None
        elif isinstance(term, OrderBy) and isinstance(term.expression, F):
            name, desc = term.expression.name, term.descending
            nulls = True if term.nulls_last else (False if term.nulls_first else None)
        else:
            return None
        if nulls is None:  # the database's own placement of NULLs
            nulls = (not desc) if connection.vendor == "postgresql" else desc
        name = "pk" if name == "id" else name
        if any(k[0] == name for k in keys):  # a repeated key (the id tie-break of an id sort) adds nothing
            continue
        keys.append((name, desc, nulls))
    if not keys or keys[-1][0] != "pk":
        return None
    return keys


def _keyset_conditions(keys, current) -> tuple:
    """Q objects for the faces strictly before and strictly after `current` (the face's values of
    the keys) in the order the keys describe, NULLs placed as the order places them."""
    from django.db.models import Q

    nothing = Q(pk__in=[])

    def nullable(name: str) -> bool:
        # A column that cannot be NULL gets no "OR … IS NULL" branch: with it PostgreSQL could not
        # walk the sort index from the face onwards (a million-face grid read every row after it).
        try:
            return Face._meta.get_field(name).null if name != "pk" else False
        except FieldDoesNotExist:
            return True  # an annotation (|yaw|, a prediction's confidence): it can be NULL

    def side(name, desc, nulls_last, value, later: bool):
        op = ("lt" if desc else "gt") if later else ("gt" if desc else "lt")
        nulls_on_this_side = (nulls_last if later else not nulls_last) and nullable(name)
        if value is None:
            return nothing if nulls_on_this_side else Q(**{f"{name}__isnull": False})
        q = Q(**{f"{name}__{op}": value})
        return q | Q(**{f"{name}__isnull": True}) if nulls_on_this_side else q

    def equal(name, value):
        return Q(**{f"{name}__isnull": True}) if value is None else Q(**{name: value})

    before, after = nothing, nothing
    prefix = Q()
    for (name, desc, nulls_last), value in zip(keys, current, strict=True):
        before |= prefix & side(name, desc, nulls_last, value, later=False)
        after |= prefix & side(name, desc, nulls_last, value, later=True)
        prefix &= equal(name, value)
    return before, after


def face_page(*, dataset: Dataset, face_id: int, flt: FaceFilter | None = None) -> dict | None:
    """Everything the face page shows; None when the face is not one of the dataset's."""
    detail = face_detail(dataset=dataset, face_id=face_id, model_version=flt.model_version if flt else None)
    if detail is None:
        return None
    face = detail["face"]
    return {
        **detail,
        "events": face_events(face=face),
        "all_predictions": face_predictions(dataset=dataset, face=face),
        "neighbours": face_neighbours(dataset=dataset, face=face, flt=flt),
    }


# --- The history in words -------------------------------------------------------------------------

HISTORY_THUMBNAILS = 8

RULE_WORDS = {
    "min_size_px": "faces smaller than {} px",
    "min_sharpness": "sharpness below {}",
    "max_abs_yaw": "yaw beyond ±{}°",
    "max_abs_roll": "roll beyond ±{}°",
    "min_detector_score": "detector score below {}",
}
FILTER_WORDS = {
    "min_size": "size at least {} px",
    "max_size": "size at most {} px",
    "min_sharpness": "sharpness at least {}",
    "max_sharpness": "sharpness at most {}",
    "max_abs_yaw": "yaw within ±{}°",
    "min_abs_yaw": "yaw beyond ±{}°",
    "min_score": "detector score at least {}",
    "max_score": "detector score at most {}",
    "file": "file name containing “{}”",
    "split": "split {}",
    "identity": "of identity cluster {}",
    "predicted": "predicted {}",
    "min_conf": "model confidence at least {}",
    "max_conf": "model confidence at most {}",
    "model": "model version id {}",
}
LABEL_FILTER_WORDS = {
    "unlabelled": "unlabelled faces",
    "labelled": "labelled faces",
    "unsure": "unsure faces",
    "excluded": "excluded faces",
    "included": "included faces",
}


def _number(value) -> str:
    """100.0 -> "100", 0.35 -> "0.35"."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def filter_words(values: dict) -> str:
    """A grid filter ({"label": "male", "min_size": "48"}) as a person says it."""
    from labeling.filters import OUTCOMES

    parts = []
    for key, value in values.items():
        if value in (None, ""):
            continue
        if key == "label":
            parts.append(LABEL_FILTER_WORDS.get(value, f"label {value}"))
        elif key == "outcome":
            parts.append(OUTCOMES.get(value, f"photo outcome {value}"))
        elif key == "disagrees":
            parts.append("the model disagrees")
        elif key == "sort":
            desc = str(value).startswith("-")
            parts.append(f"sorted by {str(value).lstrip('-')}{' (descending)' if desc else ''}")
        elif key == "per_page":
            continue
        elif key == "batch":
            number = ImportBatch.objects.filter(pk=_int_or_none(value)).values_list("number", flat=True).first()
            parts.append(f"from import #{number if number is not None else value}")
        elif key in FILTER_WORDS:
            parts.append(FILTER_WORDS[key].format(_number(value)))
        elif key.startswith("m_") and key.endswith("_min"):
            parts.append(f"{key[2:-4]} at least {_number(value)}")
        elif key.startswith("m_") and key.endswith("_max"):
            parts.append(f"{key[2:-4]} at most {_number(value)}")
        elif key.startswith("m_"):
            parts.append(f"{key[2:]} = {value}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "every face"


def action_params_words(action: BulkAction) -> str:
    """An action's parameters as a sentence: "sharpness below 40, faces smaller than 48 px"."""
    p = action.params or {}
    kind = action.kind
    if kind == BulkAction.Kind.RULE and p.get("rule") == "min_per_class":
        classes = ", ".join(p.get("classes") or []) or "none"
        return f"classes with fewer than {p.get('minimum')} faces (classes: {classes})"
    if kind == BulkAction.Kind.RULE:
        # In RULE_WORDS' order: a jsonb column does not keep the order the keys were given in.
        rules = [text.format(_number(p[k])) for k, text in RULE_WORDS.items() if k in p]
        return ", ".join(rules) or p.get("reason", "")
    if kind == BulkAction.Kind.AUTO_SPLIT:
        ratios = "/".join(f"{r * 100:.0f}" for r in p.get("ratios") or [])
        text = f"seed {p.get('seed')}, train/val/test {ratios} %, near-duplicates within {p.get('duplicate_distance')} bits"
        if p.get("identity_clusters_not_kept"):
            sizes = ", ".join(map(str, p["identity_clusters_not_kept"]))
            text += f"; identity clusters too large to be one person not kept whole ({sizes} faces)"
        return text
    if kind == BulkAction.Kind.DEDUPLICATE:
        others = [f for f in p.get("faces") or [] if f != p.get("kept")]
        return f"kept face {p.get('kept')}, excluded its near-duplicates {', '.join(map(str, others))}"
    if kind == BulkAction.Kind.SAME_PERSON:
        clusters = ", ".join(map(str, p.get("clusters") or []))
        return f"identity clusters {clusters} are the same person: merged into cluster {p.get('into')}"
    if kind == BulkAction.Kind.DIFFERENT_PEOPLE:
        n = p.get("face_total", 0)
        return (
            f"{n} face{'s' if n != 1 else ''} of identity cluster {p.get('cluster')} are another person: "
            f"moved to cluster {p.get('new_cluster')}"
        )
    if kind in (BulkAction.Kind.REVERT, BulkAction.Kind.UNDO):
        text = f"{'undid' if kind == BulkAction.Kind.UNDO else 'reverted'} action #{p.get('reverted_action')}"
        if p.get("conflict_count"):
            text += f"; {p['conflict_count']} later change(s) kept as they were"
        return text
    if kind == BulkAction.Kind.REVIEW:
        if p.get("suggestion"):
            return str(p["suggestion"])
        bits = [str(p.get("decision", "")).replace("_", " ")]
        if p.get("model_label"):
            bits.append(f"the model said {p['model_label']}")
        return ", ".join(b for b in bits if b)
    parts = []
    if "filter" in p:
        parts.append("all faces matching: " + filter_words(p["filter"]))
    if p.get("source"):
        parts.append({"grid": "from the grid", "api": "through the API"}.get(p["source"], str(p["source"])))
    if p.get("reason") and "filter" not in p:
        parts.append(str(p["reason"]))
    return ", ".join(parts)


def bulk_actions_filtered(
    *, dataset: Dataset, user=None, username: str = "", kind: str = "", face_id: int | None = None
) -> QuerySet[BulkAction]:
    """The history, newest first, narrowed by who (a user or a username), what kind and which face."""
    actions = bulk_actions(dataset=dataset)
    if user is not None:
        actions = actions.filter(user=user)
    elif username:
        actions = actions.filter(user__username=username)
    if kind:
        actions = actions.filter(kind=kind)
    if face_id is not None:
        actions = actions.filter(pk__in=LabelEvent.objects.filter(face_id=face_id).values("action_id"))
    return actions


HISTORY_PAGE = 50


@dataclass
class HistoryPage:
    actions: list[BulkAction]
    has_newer: bool
    has_older: bool


def _older_than(action: BulkAction) -> Q:
    """Actions after `action` in the history's order (created_at, id), newest first. The `lte`
    bound is what PostgreSQL can start its backward walk of the (dataset, created_at, id) index
    from; the OR only sorts out actions of the very same instant."""
    return Q(created_at__lte=action.created_at) & (Q(created_at__lt=action.created_at) | Q(pk__lt=action.pk))


def _newer_than(action: BulkAction) -> Q:
    return Q(created_at__gte=action.created_at) & (Q(created_at__gt=action.created_at) | Q(pk__gt=action.pk))


def history_page(
    *,
    actions: QuerySet[BulkAction],
    limit: int = HISTORY_PAGE,
    offset: int = 0,
    after: BulkAction | None = None,
    before: BulkAction | None = None,
) -> HistoryPage:
    """One page of `actions` (newest first). With `after` (the last action of the page before)
    the page is the `limit` actions older than it; with `before` (the first action of the page
    after) the `limit` newer ones: keyset pagination, so page 2,000 costs what page 2 does, and
    actions added between two page loads neither repeat a row nor hide one. Without either, a
    page number typed in is an OFFSET. Whether there is a newer or older page is read from the
    rows, not from a count taken before new actions arrived."""
    if after is not None:
        rows = list(actions.filter(_older_than(after))[: limit + 1])
        return HistoryPage(
            rows[:limit], has_newer=actions.exclude(_older_than(after)).exists(), has_older=len(rows) > limit
        )
    if before is not None:
        rows = list(actions.filter(_newer_than(before)).reverse()[: limit + 1])
        return HistoryPage(
            list(reversed(rows[:limit])),
            has_newer=len(rows) > limit,
            has_older=actions.exclude(_newer_than(before)).exists(),
        )
    rows = list(actions[offset : offset + limit + 1])
    return HistoryPage(rows[:limit], has_newer=offset > 0, has_older=len(rows) > limit)


def history_rows(*, actions: list[BulkAction]) -> list[dict]:
    """Per action of one history page: up to 8 faces it changed (thumbnails), its changes in words
    with counts ("label: unlabelled → female (12)") and its parameters in words. Three queries
    for the whole page, whatever the number of actions or events."""
    from django.db.models import Window
    from django.db.models.functions import DenseRank

    from labeling.services import change_words

    ids = [a.pk for a in actions]
    summary: dict[int, list[str]] = defaultdict(list)
    rows = (
        LabelEvent.objects.filter(action_id__in=ids)
        .values_list("action_id", "field", "old_value", "new_value")
        .annotate(n=Count("id"))
        .order_by("action_id", "field", "-n")
    )
    for action_id, name, old, new, n in rows:
        summary[action_id].append(change_words(name, old, new) + (f" ({n} faces)" if n != 1 else ""))
    # A dense rank over face ids: a face with several changed fields keeps one rank, so "rank <= 8"
    # is the action's first eight faces however many fields each had.
    firsts = (
        LabelEvent.objects.filter(action_id__in=ids)
        .annotate(rank=Window(DenseRank(), partition_by=[F("action_id")], order_by=F("face_id").asc()))
        .filter(rank__lte=HISTORY_THUMBNAILS)
        .values_list("action_id", "face_id")
    )
    thumbs: dict[int, list[int]] = defaultdict(list)
    for action_id, face_id in firsts:
        if face_id not in thumbs[action_id]:
            thumbs[action_id].append(face_id)
    for a in actions:
        # Identity merges and splits change no face field (no events): their faces and what
        # changed come from the action itself.
        if "identity_decision" in (a.params or {}):
            thumbs[a.pk] = list(a.params.get("sample") or [])[:HISTORY_THUMBNAILS]
            summary[a.pk] = [f"identity cluster: changed ({a.face_count} face{'s' if a.face_count != 1 else ''})"]
    faces = Face.objects.filter(pk__in=[f for fs in thumbs.values() for f in fs]).only("id", "crop", "label").in_bulk()
    out = []
    for a in actions:
        out.append(
            {
                "action": a,
                "changes": summary.get(a.pk, []),
                "faces": [faces[f] for f in sorted(thumbs.get(a.pk, [])) if f in faces],
                "params": action_params_words(a),
            }
        )
    return out


# --- Identity clusters (embeddings.identities) ------------------------------------------------------

IDENTITY_SAMPLES = 6


def identity_summary(*, dataset: Dataset) -> dict:
    """{"clusters", "faces", "single" (clusters of one face), "known" (clusters holding a named
    face), "decisions" (active merges and splits)}: one pass over the dataset's rows (a grouped
    subquery, summed in the same statement), not one pass per figure."""
    from django.db import connection
    from django.db.models import Q

    from embeddings.models import FaceIdentity, IdentityDecision

    per_cluster = (
        FaceIdentity.objects.filter(dataset=dataset)
        .values("cluster")
        .annotate(n=Count("face_id"), named=Count("face_id", filter=Q(known=True)))
        .order_by()
    )
    sql, params = per_cluster.query.sql_with_params()
    with connection.cursor() as cursor:
        # Django has no aggregate of an aggregate: its own grouped SQL, summed once around it.
        cursor.execute(
            "SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(CASE WHEN n = 1 THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN named > 0 THEN 1 ELSE 0 END), 0) FROM ({sql}) AS per_cluster",
            params,
        )
        clusters, faces, single, known = (int(v) for v in cursor.fetchone())
    decisions = IdentityDecision.objects.filter(dataset=dataset, active=True).count()
    return {"clusters": clusters, "faces": faces, "single": single, "known": known, "decisions": decisions}


def identity_cluster_count(*, dataset: Dataset, min_size: int = 1) -> int:
    from embeddings.models import FaceIdentity

    return (
        FaceIdentity.objects.filter(dataset=dataset)
        .values("cluster")
        .annotate(size=Count("face_id"))
        .filter(size__gte=min_size)
        .count()
    )


def identity_clusters_page(
    *, dataset: Dataset, offset: int, limit: int, min_size: int = 1, only: int | None = None
) -> list[dict]:
    """One page of the dataset's identity clusters, largest first (then by number): per cluster
    its size, its faces per label, its known names and up to IDENTITY_SAMPLES faces. Four queries
    for the page, each bounded by the page's clusters; no face outside the page is read. `only`:
    that one cluster (its page)."""
    from django.db.models import Window
    from django.db.models.functions import RowNumber

    from embeddings.models import FaceIdentity

    clusters = FaceIdentity.objects.filter(dataset=dataset)
    if only is not None:
        clusters = clusters.filter(cluster=only)
    rows = list(
        clusters.values("cluster")
        .annotate(size=Count("face_id"))
        .filter(size__gte=min_size)
        .order_by("-size", "cluster")[offset : offset + limit]
    )
    numbers = [r["cluster"] for r in rows]
    if not numbers:
        return []
    members = FaceIdentity.objects.filter(dataset=dataset, cluster__in=numbers)
    labels: dict[int, dict[str, int]] = defaultdict(dict)
    excluded: dict[int, int] = defaultdict(int)
    for number, label, is_excluded, n in (
        members.values_list("cluster", "face__label", "face__is_excluded").annotate(n=Count("face_id")).order_by()
    ):
        if is_excluded:
            excluded[number] += n
        else:
            key = label or "unlabelled"
            labels[number][key] = labels[number].get(key, 0) + n
    names: dict[int, list[str]] = defaultdict(list)
    for number, name in members.exclude(name="").values_list("cluster", "name").distinct().order_by("cluster", "name"):
        names[number].append(name)
    firsts = (
        members.annotate(rank=Window(RowNumber(), partition_by=[F("cluster")], order_by=F("face_id").asc()))
        .filter(rank__lte=IDENTITY_SAMPLES)
        .values_list("cluster", "face_id")
    )
    samples: dict[int, list[int]] = defaultdict(list)
    for number, face_id in firsts:
        samples[number].append(face_id)
    faces = (
        Face.objects.filter(pk__in=[f for fs in samples.values() for f in fs])
        .only("id", "crop", "label", "dataset_id", "is_excluded")
        .in_bulk()
    )
    classes = list(dataset.classes)
    out = []
    for r in rows:
        number = r["cluster"]
        counts = labels[number]
        ordered = [(c, counts[c]) for c in classes if c in counts] + sorted(
            (k, v) for k, v in counts.items() if k not in classes
        )
        out.append(
            {
                "cluster": number,
                "size": r["size"],
                "labels": ordered,
                "excluded": excluded[number],
                "names": names[number][:5],
                "more_names": max(0, len(names[number]) - 5),
                "known": bool(names[number]),
                "faces": [faces[f] for f in sorted(samples[number]) if f in faces],
            }
        )
    return out


def identity_cluster_faces(*, dataset: Dataset, cluster: int, after: int = 0, limit: int = 120) -> list[Face]:
    """Faces of one identity cluster by id, `limit` from the first id above `after` (keyset:
    page 50 of a large cluster costs what page 1 does)."""
    return list(
        Face.objects.filter(dataset=dataset, identity__cluster=cluster, pk__gt=after)
        .order_by("pk")
        .only("id", "crop", "label", "dataset_id", "is_excluded")[:limit]
    )
