"""Reads for the grid, the detail panel, the history and curation pages and the API.

The filters themselves (query parameters -> faces) are `labeling.filters.face_filter`, shared by
the grid, bulk actions over "all N matching" and the API.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from typing import TYPE_CHECKING

from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db.models import Count, F, FloatField, Max, Min, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Floor, Least

from curator.models import Dataset, Face, SourceImage
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


def faces_page(*, flt: FaceFilter, offset: int, limit: int) -> list[Face]:
    """One page of the filter's faces. The page's ids are found first on the bare face table
    (index scans, no joins), then only those rows are read with their photo and prediction, so
    page 400 of 100,000 faces costs about what page 1 does."""
    ids = list(flt.queryset.values_list("pk", flat=True)[offset : offset + limit])
    rows = Face.objects.filter(pk__in=ids).select_related("image").only(*TILE_FIELDS, "image__original_name").in_bulk()
    faces = [rows[i] for i in ids if i in rows]
    faces_attach_predictions(faces=faces, model_version=flt.model_version)
    return faces


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def face_tiles(*, faces: list[Face], classes: list[str]) -> list[dict]:
    """What the grid draws per face, prepared in Python: 120 tiles through the template
    language's filters (floatformat, url) cost several times more than these f-strings."""
    from urllib.parse import quote

    from django.urls import reverse

    media = reverse("media", kwargs={"path": "x"})[:-1]
    index = {name: i for i, name in enumerate(classes)}
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
                "badge": f"c{index.get(f.label, 9)}" if f.label else "none",
                "src": media + quote(f.crop, safe="/"),
                "title": f"face {f.pk} · {f.image.original_name}\n{quality}" + (f"\n{model}" if model else ""),
                "quality": quality + (f" · {model}" if model else ""),
                "suggestion": suggestion["text"] if suggestion else "",
                "suggestion_css": f"c{index.get(suggestion['label'], 9)}" if suggestion else "",
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


def metadata_keys(*, dataset: Dataset, sample: int = 300) -> list[str]:
    """Metadata columns present in this dataset (from a sample of its photos). Cached for a few
    minutes: the keys only change with an import, and the grid asks on every page."""
    key = f"labeling:metadata-keys:{dataset.pk}"
    keys = cache.get(key)
    if keys is None:
        found: set[str] = set()
        rows = SourceImage.objects.filter(dataset=dataset).exclude(metadata={}).values_list("metadata", flat=True)
        for meta in rows[:sample]:
            found.update(k for k in meta if re.fullmatch(r"[A-Za-z0-9_]{1,40}", k))
        keys = sorted(found)
        if keys:  # an empty answer is not kept: the first import should show its columns at once
            cache.set(key, keys, 300)
    return keys


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
    return {
        "splits": splits,
        "rows": rows,
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


def quality_histogram_counts(*, dataset: Dataset) -> list[dict]:
    """Per metric: bin edges and included/excluded counts, binned by the database (one GROUP BY per
    metric) so 100,000 faces never travel to Python."""
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
        width = (float(hi) - float(lo)) / HISTOGRAM_BINS or 1.0
        value = Cast(F(metric), FloatField())
        bucket = Least(
            Floor((value - Value(float(lo))) / Value(width), output_field=FloatField()),
            Value(float(HISTOGRAM_BINS - 1)),
            output_field=FloatField(),
        )
        rows = (
            faces.filter(**{f"{metric}__isnull": False})
            .annotate(bucket=bucket)
            .values_list("bucket", "is_excluded")
            .annotate(n=Count("id"))
            .order_by()
        )
        included, excluded = [0] * HISTOGRAM_BINS, [0] * HISTOGRAM_BINS
        for b, is_excluded, n in rows:
            (excluded if is_excluded else included)[int(b)] += n
        edges = [float(lo) + i * width for i in range(HISTOGRAM_BINS + 1)]
        out.append({"metric": metric, "title": title, "edges": edges, "included": included, "excluded": excluded})
    return out


def quality_histograms_svg(*, dataset: Dataset) -> list[tuple[str, str]]:
    """One small SVG histogram per quality metric (included vs excluded faces stacked), drawn
    with matplotlib's SVG backend (no display needed) and cached until the dataset changes."""
    key = f"labeling:histograms:{dataset_stamp(dataset=dataset)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    out = []
    for h in quality_histogram_counts(dataset=dataset):
        fig = Figure(figsize=(4.2, 2.4), dpi=72)
        ax = fig.subplots()
        if h["edges"]:
            lefts, width = h["edges"][:-1], h["edges"][1] - h["edges"][0]
            ax.bar(lefts, h["included"], width=width, align="edge", color="#2f6fed", label="included")
            ax.bar(
                lefts, h["excluded"], width=width, align="edge", bottom=h["included"], color="#c4320a", label="excluded"
            )
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
        svg = buf.getvalue()
        out.append((h["title"], svg[svg.index("<svg") :]))
    cache.set(key, out, 3600)
    return out


# --- Near-duplicates ------------------------------------------------------------------------------


def hash_pairs(ids: list[int], hashes: list[int], max_distance: int) -> list[tuple[int, int]]:
    """Pairs of ids whose 64-bit hashes differ in at most `max_distance` bits.

    Multi-index hashing: the hash is cut into four 16-bit chunks. If two hashes differed in more
    than r bits in every chunk they would differ in at least 4(r+1) bits, so with
    r = ceil((max_distance+1)/4) - 1 a close pair agrees within r bits on some chunk. For each
    chunk, every hash probes the sorted chunk values at its own value and at each value up to r
    bits away (a table of where each value starts, vectorised over all hashes), and only those
    candidates are compared: 100,000 faces at distance 6 take about a second instead of 5*10^9
    comparisons (and the result is cached, see duplicate_id_groups)."""
    from itertools import combinations

    import numpy as np

    n = len(ids)
    if n < 2:
        return []
    arr = np.array([h & 0xFFFFFFFFFFFFFFFF for h in hashes], dtype=np.uint64)
    id_arr = np.array(ids, dtype=np.int64)
    r = max(0, -(-(max_distance + 1) // 4) - 1)
    flips = [0] + [sum(1 << b for b in bits) for k in range(1, r + 1) for bits in combinations(range(16), k)]
    index = np.arange(n)
    found: list = []
    for lo in (0, 16, 32, 48):
        keys = ((arr >> np.uint64(lo)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        # Where each of the 65,536 chunk values starts in sorted order: probes become table lookups.
        starts_of = np.searchsorted(keys[order], np.arange(0x10001))
        for flip in flips:
            probe = keys ^ flip
            left = starts_of[probe]
            counts = starts_of[probe + 1] - left
            total = int(counts.sum())
            if not total:
                continue
            src = np.repeat(index, counts)
            starts = np.repeat(left - (np.cumsum(counts) - counts), counts)
            dst = order[starts + np.arange(total)]
            keep = src < dst  # each unordered pair once, never a hash with itself
            src, dst = src[keep], dst[keep]
            hit = np.bitwise_count(arr[src] ^ arr[dst]) <= max_distance
            if hit.any():
                found.append(np.stack([id_arr[src[hit]], id_arr[dst[hit]]], axis=1))
    if not found:
        return []
    pairs = np.unique(np.sort(np.concatenate(found), axis=1), axis=0)
    return [(int(a), int(b)) for a, b in pairs]


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


def duplicate_id_groups(*, dataset: Dataset, max_distance: int) -> list[list[int]]:
    """Face ids grouped by near-identical phash; cached until faces are added or replaced (hashes
    only change when alignment rewrites faces, which changes the stamp's count or last id)."""
    faces = Face.objects.filter(dataset=dataset).aggregate(n=Count("id"), last=Max("id"))
    key = f"labeling:dupes:{dataset.pk}:{faces['n']}:{faces['last']}:{max_distance}"
    groups = cache.get(key)
    if groups is None:
        rows = list(Face.objects.filter(dataset=dataset, phash__isnull=False).values_list("id", "phash"))
        pairs = hash_pairs([r[0] for r in rows], [r[1] for r in rows], max_distance)
        groups = [g for g in connected_groups([], pairs) if len(g) > 1]
        cache.set(key, groups, 3600)
    return groups


def duplicate_groups(*, dataset: Dataset, max_distance: int = 6) -> list[dict]:
    """Groups of near-identical faces (phash within `max_distance` bits) with their faces,
    conflicting labels first, then largest first."""
    groups = duplicate_id_groups(dataset=dataset, max_distance=max_distance)
    faces = (
        Face.objects.filter(pk__in=[f for g in groups for f in g])
        .only("id", "dataset", "label", "is_excluded", "crop")
        .in_bulk()
    )
    out = []
    for g in groups:
        members = [faces[f] for f in g if f in faces]
        labels = {m.label for m in members if m.label and not m.is_excluded}
        out.append(
            {
                "faces": members,
                "ids": ",".join(str(m.pk) for m in members),
                "labels": sorted(labels),
                "conflict": len(labels) > 1,
                "included": sum(1 for m in members if not m.is_excluded),
            }
        )
    out.sort(key=lambda d: (not d["conflict"], -len(d["faces"]), d["faces"][0].pk))
    return out


def face_groups_for_split(*, dataset: Dataset, face_ids: set[int], duplicate_distance: int) -> list[list[int]]:
    """Groups that must land in one split: near-duplicates, faces of the same known identity
    (`SourceImage.metadata["identity"]`) and faces of the same photo. Sorted by first id."""
    rows = list(
        Face.objects.filter(pk__in=face_ids).values_list("id", "phash", "image_id", "image__metadata__identity")
    )
    pairs: list[tuple[int, int]] = []
    by_key: dict[tuple, int] = {}
    for face_id, _, image_id, identity in rows:
        for key in (("image", image_id), ("identity", identity)):
            if key[1] in (None, ""):
                continue
            if key in by_key:
                pairs.append((face_id, by_key[key]))
            else:
                by_key[key] = face_id
    hashed = [(r[0], r[1]) for r in rows if r[1] is not None]
    pairs += hash_pairs([h[0] for h in hashed], [h[1] for h in hashed], duplicate_distance)
    return sorted(connected_groups(face_ids, pairs), key=lambda g: g[0])


def exports_list(*, dataset: Dataset) -> list[dict]:
    prefix = f"datasets/{dataset.pk}/exports"
    try:
        _, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in sorted((f for f in files if f.endswith(".zip")), reverse=True):
        path = f"{prefix}/{name}"
        out.append({"name": name, "path": path, "size": default_storage.size(path)})
    return out
