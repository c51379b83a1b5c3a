"""The grid's embedding filters and sorts, plugged into `FaceFilterSet` like training's prediction
filters (labeling/apps.py registers `EMBEDDING_FILTERS`):

- `similar_to=<face id>`: that face itself (distance 0, first) and the SIMILAR_K faces nearest to
  it by descriptor distance; `sort=distance` orders them nearest first and the tiles show the
  distance; while descriptors are still being computed the grid's sentence says how many faces
  can be found so far;
- `ids=1,2,3`: exactly these faces; `selection=<id>`: the faces of a saved selection (a lasso on
  the map can pick thousands, more than a URL holds);
- `sort=uniqueness`: by the stored uniqueness score (`-uniqueness`: most unique first,
  `uniqueness`: most typical first); faces without a score come last.
"""

from __future__ import annotations

from django.db.models import Case, F, FloatField, Value, When

from curator.params import id_param
from embeddings import selectors as embedding_selectors
from embeddings.models import FaceSelection
from labeling.filters import Narrowing, NumberFilter, TextFilter

SIMILAR_K = 120
MAX_IDS = 1000


def similar_neighbours(*, dataset, face_id: int, k: int = SIMILAR_K) -> list[tuple[int, float]] | None:
    """[(face id, distance)] nearest first; None when the face has no current descriptor."""
    from curator.models import Face

    face = Face.objects.filter(dataset=dataset, pk=face_id).first()
    if face is None or embedding_selectors.face_vector(face) is None:
        return None
    return embedding_selectors.face_neighbours(face=face, k=k)


def _descriptors_pending(face_id: int) -> str:
    """Words for a similarity grid while the dataset's descriptors are incomplete: faces without
    one cannot be found yet, and the grid must not look complete ("" when all are there)."""
    from curator.models import Face

    face = Face.objects.filter(pk=face_id).select_related("dataset").first()
    if face is None:
        return ""
    progress = embedding_selectors.descriptor_progress(dataset=face.dataset)
    if progress["done"] >= progress["faces"]:
        return ""
    state = "still being computed" if progress["running"] else "missing (not queued)"
    return (
        f"searched among the {progress['done']} of {progress['faces']} faces that have a descriptor so far "
        f"(the others' are {state}: they can show up later)"
    )


class EmbeddingFilters:
    sorts = ("distance", "uniqueness")

    def filters(self) -> dict:
        return {
            "similar_to": NumberFilter(
                method="filter_nothing", integer=True, label=f"a face id: its {SIMILAR_K} nearest faces by descriptor"
            ),
            "ids": TextFilter(method="filter_nothing", label=f"comma-separated face ids (at most {MAX_IDS})"),
            "selection": NumberFilter(
                method="filter_nothing", integer=True, label="a saved selection id (from the map)"
            ),
        }

    def narrow(self, *, dataset, queryset, data, raw, sort, values, errors) -> Narrowing:
        distance_order = None
        matching = queryset

        if raw.get("ids", "").strip():
            parts = [p.strip() for p in raw["ids"].split(",") if p.strip()]
            if any(id_param(p) is None for p in parts):
                errors.setdefault("ids", []).append("ids must be face ids separated by commas, e.g. ids=12,40,41.")
            elif len(parts) > MAX_IDS:
                errors.setdefault("ids", []).append(
                    f"ids names {len(parts)} faces; at most {MAX_IDS} fit in a link: select them on the map "
                    "(a saved selection) instead."
                )
            else:
                matching = matching.filter(pk__in=[int(p) for p in parts])
                values["ids"] = ",".join(parts)

        if raw.get("selection", "") and data.get("selection") is not None:
            selection = FaceSelection.objects.filter(dataset=dataset, pk=data["selection"]).first()
            if selection is None:
                errors.setdefault("selection", []).append(
                    f"Selection {data['selection']} is not a selection of this dataset."
                )
            else:
                matching = matching.filter(pk__in=selection.face_ids)
            values["selection"] = data["selection"]

        if raw.get("similar_to", "") and data.get("similar_to") is not None:
            face_id = data["similar_to"]
            values["similar_to"] = face_id
            neighbours = similar_neighbours(dataset=dataset, face_id=face_id)
            if neighbours is None:
                errors.setdefault("similar_to", []).append(
                    f"Face {face_id} is not a face of this dataset with a descriptor yet (descriptors are "
                    "computed in the background after alignment)."
                )
            else:
                # The face asked about comes first: a grid "like face 12" without face 12 hid
                # what the others were compared with.
                distances = {face_id: 0.0, **dict(neighbours)}
                matching = matching.filter(pk__in=list(distances))
                distance_order = distances
        elif sort.lstrip("-") == "distance":
            errors.setdefault("sort", []).append(
                "Sorting by distance needs a face to compare with: similar_to=<face id>."
            )
        orders = {
            "uniqueness": self._by_uniqueness(matching),
            "distance": None if distance_order is None else self._by_distance(matching, distance_order),
        }
        return Narrowing(matching=matching, orders=orders)

    def describe(self, *, values: dict, model_version=None) -> list[str]:
        """This extension's part of the grid's "Showing faces ..." sentence."""
        words = []
        if values.get("similar_to") is not None:
            words.append(
                f"most like face {values['similar_to']} (itself first, then its {SIMILAR_K} nearest by descriptor)"
            )
            pending = _descriptors_pending(values["similar_to"])
            if pending:
                words.append(pending)
        if values.get("selection") is not None:
            words.append(f"of selection #{values['selection']} (picked on the map)")
        if values.get("ids"):
            n = values["ids"].count(",") + 1
            words.append(f"among {n} chosen face{'s' if n != 1 else ''}")
        return words

    @staticmethod
    def _by_distance(matching, distances: dict[int, float]):
        def order(desc: bool):
            distance = Case(*(When(pk=i, then=Value(d)) for i, d in distances.items()), output_field=FloatField())
            qs = matching.annotate(similar_distance=distance)
            return qs.order_by(F("similar_distance").desc() if desc else F("similar_distance").asc(), "id")

        return order

    @staticmethod
    def _by_uniqueness(queryset):
        def order(desc: bool):
            score = F("uniqueness__score")
            return queryset.order_by(
                score.desc(nulls_last=True) if desc else score.asc(nulls_last=True), "-id" if desc else "id"
            )

        return order


EMBEDDING_FILTERS = EmbeddingFilters()


def faces_attach_distances(*, faces: list, values: dict, dataset) -> None:
    """Set `similar_distance` on each face of a `similar_to` grid page (the tiles show it)."""
    face_id = values.get("similar_to")
    if face_id is None:
        return
    distances = dict(similar_neighbours(dataset=dataset, face_id=face_id) or [])
    distances[face_id] = 0.0  # the face itself, shown first
    for face in faces:
        face.similar_distance = distances.get(face.pk)
