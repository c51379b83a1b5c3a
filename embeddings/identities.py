"""Identity clusters: which faces are probably the same person, so a split can keep each person
on one side and an evaluation can count the test faces whose person was also trained on.

A dataset that names its people (photo metadata "identity" or "person", or LFW-style file names
`Firstname_Lastname_0001.jpg`) is clustered by those names; the other faces by dlib's Chinese
whispers over their descriptors, an edge between two faces closer than CLUSTER_DISTANCE (each
face's nearest neighbours only, so the graph of a large dataset stays small).

Why 0.5 and not dlib's 0.6: 0.6 is dlib's threshold for ONE pair, but a graph clustering chains
pairs. Measured on 200 dev photos of 200 different people (100 LFW, 100 UTKFace): at 0.6 they
formed 90 clusters, the largest of 38 different people (a split would move them as one); at 0.5,
177 clusters, the largest of 9, and 98 of the 100 LFW people alone. Another photo of one person is
usually 0.3-0.5 from the first."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import numpy as np
from django.conf import settings
from django.db import transaction

from curator.models import Face
from curator.params import id_param
from embeddings.graph import close_pairs
from embeddings.models import DescriptorSet, FaceIdentity, IdentityDecision

CLUSTER_DISTANCE = 0.5  # the default of CURATOR_IDENTITY_DISTANCE
NEIGHBOURS = 30
IDENTITY_KEYS = ("identity", "person")
LFW_NAME = re.compile(r"^([A-Z][A-Za-z'.-]*(?:_[A-Za-z'.-]+)+)_\d{4}$")


def known_identity(metadata: dict | None, original_name: str) -> str:
    """The person a photo names: its metadata's identity/person, else an LFW-style file name."""
    for key in IDENTITY_KEYS:
        value = (metadata or {}).get(key)
        if value not in (None, ""):
            return str(value)
    stem = PurePosixPath(original_name or "").name.split(".")[0]
    match = LFW_NAME.match(stem)
    return match.group(1) if match else ""


def cluster_labels(vectors: np.ndarray, *, threshold: float = CLUSTER_DISTANCE, k: int = NEIGHBOURS) -> np.ndarray:
    """Chinese-whispers cluster number of each vector (dlib's, seeded by dlib itself)."""
    import dlib

    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    edges = [(i, i) for i in range(n)]  # every face is a vertex, with or without a neighbour
    edges += [(int(i), int(j)) for i, j, _ in close_pairs(vectors, threshold, k=k)]
    return np.asarray(dlib.chinese_whispers(edges), dtype=np.int64)


def identity_clusters_compute(*, dataset_id: int, stamp: int | None = None) -> int:
    """Store the cluster of every face of the dataset (FaceIdentity), then apply the curators'
    decisions to it again (identity_decisions_apply); returns the number of clusters as
    computed. Faces with neither a known identity nor a descriptor get no row."""
    from embeddings.selectors import dataset_index

    index = dataset_index(dataset_id)
    labels = cluster_labels(index.vectors, threshold=settings.CURATOR_IDENTITY_DISTANCE)
    rows = Face.objects.filter(dataset_id=dataset_id).values_list("pk", "image__metadata", "image__original_name")
    known = {pk: name for pk, meta, original in rows if (name := known_identity(meta, original))}
    cluster: dict[int, tuple[int, str]] = {}
    numbers: dict[str, int] = {}
    for face_id, label in zip(index.ids.tolist(), labels.tolist(), strict=True):
        if face_id not in known:
            cluster[face_id] = (int(label), "")
    offset = int(labels.max()) + 1 if len(labels) else 0
    for face_id, name in known.items():
        cluster[face_id] = (offset + numbers.setdefault(name, len(numbers)), name)
    with transaction.atomic():
        FaceIdentity.objects.filter(dataset_id=dataset_id).delete()
        FaceIdentity.objects.bulk_create(
            [
                FaceIdentity(
                    face_id=f, dataset_id=dataset_id, cluster=c, computed_cluster=c, known=bool(n), name=n[:200]
                )
                for f, (c, n) in sorted(cluster.items())
            ],
            batch_size=5000,
        )
        identity_decisions_apply(dataset_id=dataset_id)
        if stamp is not None:
            DescriptorSet.objects.filter(dataset_id=dataset_id).update(clusters_stamp=stamp)
    return len({c for c, _ in cluster.values()})


# --- The curators' decisions ----------------------------------------------------------------------


class IdentityError(Exception):
    """A merge or split that cannot be done as asked (the message says why, in words)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _whole(value) -> int:
    """A cluster number or face id from a form: ASCII digits only (curator.params.id_param), so
    "١٢" is not 12 and a number beyond 64 bits names nothing."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = id_param(value if isinstance(value, str) else None)
    if number is None:
        raise IdentityError(f"“{value}” is not a cluster or face number: cluster and face ids must be whole numbers.")
    return number


def _assignment(dataset_id: int, *, toggled: dict[int, bool] | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """({face: cluster now}, {face: cluster after the active decisions}), the decisions applied
    oldest first to the computed clusters; `toggled` ({decision id: active}) answers "what if
    this decision were on or off" without writing."""
    rows = FaceIdentity.objects.filter(dataset_id=dataset_id).values_list("face_id", "computed_cluster", "cluster")
    now: dict[int, int] = {}
    cluster: dict[int, int] = {}
    members: dict[int, set[int]] = {}
    for face_id, computed, current in rows:
        now[face_id] = current
        cluster[face_id] = computed
        members.setdefault(computed, set()).add(face_id)
    next_number = max(members, default=-1) + 1
    decisions = IdentityDecision.objects.filter(dataset_id=dataset_id).values_list("pk", "kind", "face_ids", "active")
    for pk, kind, face_ids, active in decisions.order_by("created_at", "id"):
        if not (toggled or {}).get(pk, active):
            continue
        present = [f for f in face_ids if f in cluster]
        if kind == IdentityDecision.Kind.MERGE:
            involved = sorted({cluster[f] for f in present})
            for number in involved[1:]:  # into the lowest number: the same faces give the same result
                for f in members.pop(number, ()):
                    cluster[f] = involved[0]
                    members[involved[0]].add(f)
        elif present:
            for f in present:
                members[cluster[f]].discard(f)
                cluster[f] = next_number
            members[next_number] = set(present)
            next_number += 1
    return now, cluster


def identity_decisions_apply(*, dataset_id: int) -> int:
    """Set every face's cluster to its computed cluster corrected by the active decisions.
    Returns the number of faces whose cluster changed. One UPDATE per new cluster number."""
    now, after = _assignment(dataset_id)
    moves: dict[int, list[int]] = {}
    for face_id, number in after.items():
        if now[face_id] != number:
            moves.setdefault(number, []).append(face_id)
    for number, face_ids in moves.items():
        FaceIdentity.objects.filter(dataset_id=dataset_id, face_id__in=face_ids).update(cluster=number)
    return sum(len(f) for f in moves.values())


def identity_decision_effect(*, decision: IdentityDecision, active: bool) -> int:
    """How many faces would change cluster if `decision` were set active (or not): for the
    revert page, before anything is written."""
    now, after = _assignment(decision.dataset_id, toggled={decision.pk: active})
    return sum(1 for face_id, number in after.items() if now[face_id] != number)


def cluster_face_ids(*, dataset_id: int, cluster: int) -> list[int]:
    return list(
        FaceIdentity.objects.filter(dataset_id=dataset_id, cluster=cluster)
        .order_by("face_id")
        .values_list("face_id", flat=True)
    )


@transaction.atomic
def identity_clusters_merge(*, dataset_id: int, clusters) -> tuple[IdentityDecision, int]:
    """ "Same person": the clusters become one (the lowest number). Returns the decision and the
    number of faces that changed cluster."""
    numbers = sorted({_whole(c) for c in clusters})
    if len(numbers) < 2:
        raise IdentityError("Pick two or more clusters to merge.")
    # Lock the dataset's clusters: a merge and a split at once must not both read the old ones.
    list(FaceIdentity.objects.select_for_update().filter(dataset_id=dataset_id).values_list("pk", flat=True))
    face_ids = []
    for number in numbers:
        members = cluster_face_ids(dataset_id=dataset_id, cluster=number)
        if not members:
            raise IdentityError(
                f"Identity cluster {number} is not a cluster of this dataset (any more); reload the page."
            )
        face_ids += members
    decision = IdentityDecision.objects.create(
        dataset_id=dataset_id, kind=IdentityDecision.Kind.MERGE, face_ids=sorted(face_ids)
    )
    return decision, identity_decisions_apply(dataset_id=dataset_id)


@transaction.atomic
def identity_cluster_split(*, dataset_id: int, cluster, face_ids) -> tuple[IdentityDecision, int]:
    """ "These are different people": the picked faces of `cluster` leave it and form a cluster
    of their own. Returns the decision and the number of faces that changed cluster."""
    number = _whole(cluster)
    picked = sorted({_whole(f) for f in face_ids})
    list(FaceIdentity.objects.select_for_update().filter(dataset_id=dataset_id).values_list("pk", flat=True))
    members = set(cluster_face_ids(dataset_id=dataset_id, cluster=number))
    if not members:
        raise IdentityError(f"Identity cluster {number} is not a cluster of this dataset (any more); reload the page.")
    if not picked:
        raise IdentityError("Pick the faces that are another person first.")
    strangers = [f for f in picked if f not in members]
    if strangers:
        raise IdentityError(
            f"Face{'s' if len(strangers) > 1 else ''} {', '.join(map(str, strangers[:10]))} "
            f"{'are' if len(strangers) > 1 else 'is'} not in cluster {number} (any more); reload the page."
        )
    if len(picked) == len(members):
        raise IdentityError("Those are all the faces of the cluster: pick only the ones that are another person.")
    decision = IdentityDecision.objects.create(dataset_id=dataset_id, kind=IdentityDecision.Kind.SPLIT, face_ids=picked)
    return decision, identity_decisions_apply(dataset_id=dataset_id)


@transaction.atomic
def identity_decision_activate(*, decision_id: int, active: bool) -> int:
    """Turn a decision on or off (a revert in the history) and apply the decisions again.
    Returns the number of faces that changed cluster."""
    decision = IdentityDecision.objects.select_for_update().get(pk=decision_id)
    list(FaceIdentity.objects.select_for_update().filter(dataset_id=decision.dataset_id).values_list("pk", flat=True))
    decision.active = active
    decision.save(update_fields=["active"])
    return identity_decisions_apply(dataset_id=decision.dataset_id)
