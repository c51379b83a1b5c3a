"""Every change of a face's label state goes through here.

`faces_update` is the single transactional entry point: it validates the change, refuses stale
saves (optimistic concurrency on `Face.version`), writes one `LabelEvent` per changed field, bumps
the version and sends `labels_changed` (training keeps `Prediction.disagrees` in step on it). Undo, revert, exclusion rules, automatic
splits and duplicate handling are all built on the same internal `_apply`, so every one of them is
recorded the same way and can itself be reverted.

Everything here is set-based (one SELECT ... FOR UPDATE, a few grouped UPDATEs, one bulk INSERT of
events) so that an action over 10,000 faces stays well under two seconds on PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import math
import random
import shutil
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Q, QuerySet, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Abs
from django.utils import timezone

from curator.models import Dataset, Face, SourceImage
from curator.spreadsheet import csv_row
from labeling.models import BulkAction, ExportJob, LabelEvent
from labeling.signals import labels_changed

FIELDS = ("label", "is_unsure", "is_excluded", "split")
SPLITS = ("", "train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test", "": "", "none": ""}
EVENT_BATCH = 5000


class LabelingError(Exception):
    """A change that cannot be made; the message is meant for the person who asked."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidChange(LabelingError):
    pass


class NoFaces(LabelingError):
    pass


class NeedsConfirmation(LabelingError):
    """A large action asked without its second confirmation; nothing was changed. The page or API
    client shows the message and asks again with `confirm_large`."""

    code = "needs_confirmation"

    def __init__(self, *, face_count: int, total: int):
        self.face_count = face_count
        self.total = total
        self.share = face_count / total if total else 1.0
        super().__init__(
            f"This changes {face_count} faces, {self.share * 100:.1f} % of the dataset; confirm again to go ahead."
        )


class StaleFace(LabelingError):
    """Some faces changed since the page that asked for this change was shown. `current` holds
    their present state so the page can show it; nothing was saved."""

    def __init__(self, current: list[dict]):
        self.current = current
        parts = []
        for row in current[:5]:
            parts.append(
                f"face {row['id']} is now {_describe(row)} (version {row['version']}, you had {row['expected_version']})"
            )
        more = f" and {len(current) - 5} more" if len(current) > 5 else ""
        super().__init__(
            "Not saved: someone changed "
            + ("this face" if len(current) == 1 else f"{len(current)} of these faces")
            + " since you loaded the page: "
            + "; ".join(parts)
            + more
            + ". Look again and repeat your change if it still applies."
        )


def _describe(row: dict) -> str:
    bits = [row["label"] or "unlabelled"]
    if row.get("is_unsure"):
        bits.append("unsure")
    if row.get("is_excluded"):
        bits.append("excluded")
    if row.get("split"):
        bits.append(f"split {row['split']}")
    return ", ".join(bits)


# --- Validation -----------------------------------------------------------------------------------


def _as_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on"}:
        return True
    if isinstance(value, str) and value.lower() in {"0", "false", "no", "off"}:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidChange(f"“{value}” is not a valid value for {name}: use true or false.")


def changes_validate(*, dataset: Dataset, changes: dict) -> dict:
    """Normalise a change dict; unknown fields, labels or splits raise InvalidChange."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidChange("Nothing to change: give a label, unsure, excluded or split.")
    clean: dict = {}
    for key, value in changes.items():
        if key == "label":
            value = "" if value is None else str(value)
            if value not in dataset.classes and value != "":
                raise InvalidChange(
                    f"Unknown label “{value}”: this dataset's classes are {', '.join(dataset.classes)}."
                )
            clean["label"] = value
        elif key == "split":
            name = "" if value is None else str(value).lower()
            if name not in SPLIT_NAMES:
                raise InvalidChange(f"Unknown split “{value}”: use train, val, test or none.")
            clean["split"] = SPLIT_NAMES[name]
        elif key in ("is_unsure", "is_excluded"):
            clean[key] = _as_bool(key, value)
        else:
            raise InvalidChange(f"Unknown field “{key}”: only label, is_unsure, is_excluded and split can change.")
    return clean


def _value_str(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_parse(field_name: str, text: str):
    if field_name in ("is_unsure", "is_excluded"):
        return text == "true"
    return text


# --- The core ---------------------------------------------------------------------------------------


@dataclass
class _Row:
    id: int
    version: int
    label: str
    is_unsure: bool
    is_excluded: bool
    split: str

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "version": self.version,
            "label": self.label,
            "is_unsure": self.is_unsure,
            "is_excluded": self.is_excluded,
            "split": self.split,
        }


@dataclass
class RevertResult:
    action: BulkAction | None
    reverted: int = 0
    conflicts: list[dict] = field(default_factory=list)


def _ids_in(ids):
    """The right-hand side of `pk__in` for many ids. On PostgreSQL one array parameter
    (`IN (SELECT unnest(%s::bigint[]))`) instead of 10,000 placeholders, which Django would
    have to compile and the driver to interpolate one by one."""
    ids = list(ids)
    if connection.vendor == "postgresql" and len(ids) > 100:
        return RawSQL("SELECT unnest(%s::bigint[])", [ids])
    return ids


def _face_ids(dataset: Dataset, faces) -> tuple[QuerySet, int | None]:
    """Faces of this dataset from a queryset or ids, and how many ids were asked for (None for a
    queryset), so ids of other datasets can be refused once the rows are read."""
    if isinstance(faces, QuerySet):
        return faces.filter(dataset=dataset), None
    try:
        ids = {int(f.pk if isinstance(f, Face) else f) for f in faces}
    except (TypeError, ValueError) as exc:
        raise InvalidChange("Face ids must be whole numbers.") from exc
    return Face.objects.filter(dataset=dataset, pk__in=_ids_in(ids)), len(ids)


def _check_found(rows: dict, asked: int | None) -> None:
    if asked is not None and len(rows) != asked:
        raise InvalidChange(f"{asked - len(rows)} of the {asked} face ids are not faces of this dataset.")


def _lock_rows(qs: QuerySet) -> dict[int, _Row]:
    # Ordered by id so two concurrent actions lock in the same order and cannot deadlock.
    rows = (
        qs.select_for_update().order_by("id").values_list("id", "version", "label", "is_unsure", "is_excluded", "split")
    )
    return {r[0]: _Row(*r) for r in rows}


def _check_versions(rows: dict[int, _Row], expected_versions: dict | None) -> None:
    if not expected_versions:
        return
    stale = []
    for face_id, expected in expected_versions.items():
        row = rows.get(int(face_id))
        if row is not None and row.version != int(expected):
            stale.append({**row.as_dict(), "expected_version": int(expected)})
    if stale:
        raise StaleFace(stale)


def _apply(
    *,
    action: BulkAction,
    rows: dict[int, _Row],
    targets: dict[int, dict],
    split_manual: bool | None,
    exclusion_reason: str = "",
) -> int:
    """Write events and the new state for faces whose target differs from their row. Returns the
    number of faces changed. Faces are updated in groups sharing one target, so a bulk action is
    one UPDATE per distinct target rather than one per face."""
    now = timezone.now()
    events: list[tuple[int, str, str, str]] = []
    groups: dict[tuple, list[int]] = defaultdict(list)
    for face_id, target in targets.items():
        row = rows[face_id]
        changed = {}
        for name, new in target.items():
            old = getattr(row, name)
            if old != new:
                changed[name] = new
                events.append((face_id, name, _value_str(old), _value_str(new)))
        if changed:
            groups[tuple(sorted(changed.items()))].append(face_id)
    _events_insert(action, events, now)
    changed_count = 0
    for key, ids in groups.items():
        values = dict(key)
        update: dict = {"version": F("version") + 1, "updated_at": now, **values}
        if "label" in values:
            update["label_origin"] = Face.LabelOrigin.HUMAN if values["label"] else Face.LabelOrigin.NONE
        if "split" in values and split_manual is not None:
            update["split_manual"] = split_manual and values["split"] != ""
        if "is_excluded" in values:
            update["exclusion_reason"] = exclusion_reason[:200] if values["is_excluded"] else ""
        Face.objects.filter(pk__in=_ids_in(ids)).update(**update)
        if "label" in values:
            labels_changed.send(sender=BulkAction, dataset_id=action.dataset_id, face_ids=ids, label=values["label"])
        changed_count += len(ids)
    action.face_count = changed_count
    action.save(update_fields=["face_count"])
    return changed_count


def _events_insert(action: BulkAction, events: list[tuple[int, str, str, str]], now) -> None:
    if not events:
        return
    if connection.vendor != "postgresql":
        LabelEvent.objects.bulk_create(
            [
                LabelEvent(
                    face_id=f, action=action, field=n, old_value=o, new_value=v, user_id=action.user_id, created_at=now
                )
                for f, n, o, v in events
            ],
            batch_size=EVENT_BATCH,
        )
        return
    # One INSERT ... SELECT FROM unnest(arrays): four array parameters instead of 70,000
    # placeholders for 10,000 events.
    face_ids, fields, olds, news = (list(column) for column in zip(*events, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {LabelEvent._meta.db_table} "
            "(face_id, action_id, field, old_value, new_value, user_id, created_at) "
            "SELECT f, %s, fl, o, n, %s, %s FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) "
            "AS t(f, fl, o, n)",
            [action.pk, action.user_id, now, face_ids, fields, olds, news],
        )


def _new_action(*, user, dataset: Dataset, kind: str, params: dict | None, reverts: BulkAction | None = None):
    return BulkAction.objects.create(
        dataset=dataset,
        user=user if user is not None and user.is_authenticated else None,
        kind=kind,
        params=params or {},
        reverts=reverts,
    )


@transaction.atomic
def faces_update(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    faces: QuerySet | Iterable[int],
    changes: dict,
    kind: str | None = None,
    params: dict | None = None,
    expected_versions: dict[int, int] | None = None,
) -> BulkAction:
    """Set the same fields on every given face of the dataset, as one recorded action.

    Raises InvalidChange (bad field, label or split, foreign ids), NoFaces (empty selection) or
    StaleFace (a face's version differs from `expected_versions`); nothing is written then.
    """
    clean = changes_validate(dataset=dataset, changes=changes)
    kind = kind or _kind_for(clean)
    qs, asked = _face_ids(dataset, faces)
    rows = _lock_rows(qs)
    if not rows and not asked:
        raise NoFaces("No faces selected: nothing was changed.")
    _check_found(rows, asked)
    _check_versions(rows, expected_versions)
    action = _new_action(user=user, dataset=dataset, kind=kind, params=params)
    reason = (params or {}).get("reason") or BulkAction.Kind(kind).label
    _apply(
        action=action,
        rows=rows,
        targets=dict.fromkeys(rows, clean),
        split_manual=True if kind == BulkAction.Kind.SPLIT else None,
        exclusion_reason=reason,
    )
    return action


def faces_mark_not_face(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    faces: Iterable[int],
    expected_versions: dict[int, int] | None = None,
) -> BulkAction:
    """ "Not a face": a false detection (a necktie, a poster's pattern) is excluded with the reason
    Face.NOT_A_FACE, as one action of its own kind, so the history says what it was and `z` or a
    revert takes it back. Re-alignment keeps the mark on the same box (is_excluded and
    exclusion_reason are human fields there). Faces already marked are left as they are."""
    ids = list(faces)
    if not ids:
        raise NoFaces("No face given: focus or select the false detection first.")
    with transaction.atomic():
        # Faces excluded already (by a rule, say) stay excluded, so they get no is_excluded
        # event; their reason still becomes "not a face" and the action names them.
        already = list(
            Face.objects.filter(dataset=dataset, pk__in=ids, is_excluded=True)
            .exclude(exclusion_reason=Face.NOT_A_FACE)
            .values_list("pk", flat=True)
        )
        action = faces_update(
            user=user,
            dataset=dataset,
            faces=ids,
            changes={"is_excluded": True},
            kind=BulkAction.Kind.NOT_A_FACE,
            params={"reason": Face.NOT_A_FACE, **({"reason_changed": already} if already else {})},
            expected_versions=expected_versions,
        )
        if already:
            Face.objects.filter(pk__in=already).update(
                exclusion_reason=Face.NOT_A_FACE, version=F("version") + 1, updated_at=timezone.now()
            )
            action.face_count += len(already)
            action.save(update_fields=["face_count"])
    return action


def action_share_check(*, dataset: Dataset, face_count: int, confirmed_large: bool) -> None:
    """Refuse an action over more than CURATOR_MAX_ACTION_SHARE of the dataset's faces unless the
    person confirmed it a second time: one mis-set threshold or a "select all" should not quietly
    rewrite a third of a dataset (it could be reverted, but only if someone notices)."""
    if confirmed_large or face_count <= 0:
        return
    total = Face.objects.filter(dataset=dataset).count()
    if face_count > settings.CURATOR_MAX_ACTION_SHARE * total:
        raise NeedsConfirmation(face_count=face_count, total=total)


def _kind_for(changes: dict) -> str:
    if "label" in changes:
        return BulkAction.Kind.LABEL
    if "split" in changes:
        return BulkAction.Kind.SPLIT
    if changes.get("is_excluded") is True:
        return BulkAction.Kind.EXCLUDE
    if changes.get("is_excluded") is False:
        return BulkAction.Kind.INCLUDE
    return BulkAction.Kind.UNSURE


def bulk_action_conflicts(*, action: BulkAction) -> tuple[list[dict], int]:
    """What reverting `action` would do: (conflicts, faces it would restore). A conflict is a
    field whose current value is no longer what the action set, i.e. a later change exists."""
    current = {
        r[0]: _Row(*r)
        for r in Face.objects.filter(label_events__action=action)
        .distinct()
        .values_list("id", "version", "label", "is_unsure", "is_excluded", "split")
    }
    conflicts, restorable = [], set()
    for face_id, name, old, new in action.events.values_list("face_id", "field", "old_value", "new_value"):
        row = current.get(face_id)
        if row is None:
            continue
        now_value = _value_str(getattr(row, name))
        if now_value != new:
            conflicts.append({"face_id": face_id, "field": name, "set_to": new, "now": now_value, "was": old})
        else:
            restorable.add(face_id)
    conflicted = {c["face_id"] for c in conflicts}
    return conflicts, len(restorable - conflicted)


@transaction.atomic
def bulk_action_revert(
    *, user: AbstractBaseUser | None, action: BulkAction, kind: str = BulkAction.Kind.REVERT
) -> RevertResult:
    """Restore what `action` changed. A face changed again since then is left as it is and listed
    as a conflict (a face is reverted whole or not at all, so it never ends half-reverted)."""
    action = BulkAction.objects.select_for_update().get(pk=action.pk)
    if action.reverted_by.exists():
        raise InvalidChange(f"Action {action.pk} was already reverted.")
    if "identity_decision" in (action.params or {}):
        return _identity_revert(user=user, action=action, kind=kind)
    events = list(action.events.values_list("face_id", "field", "old_value", "new_value"))
    if not events:
        raise NoFaces(f"Action {action.pk} changed no faces, so there is nothing to revert.")
    rows = _lock_rows(Face.objects.filter(pk__in=_ids_in({e[0] for e in events})))
    targets: dict[int, dict] = defaultdict(dict)
    conflicts: list[dict] = []
    for face_id, name, old, new in events:
        row = rows.get(face_id)
        if row is None:  # the face was deleted (re-alignment); nothing to restore
            continue
        now_value = _value_str(getattr(row, name))
        if now_value != new:
            conflicts.append({"face_id": face_id, "field": name, "set_to": new, "now": now_value, "was": old})
        else:
            targets[face_id][name] = _value_parse(name, old)
    for face_id in {c["face_id"] for c in conflicts}:
        targets.pop(face_id, None)
    params = {"reverted_action": action.pk, "conflicts": conflicts[:1000], "conflict_count": len(conflicts)}
    new_action = _new_action(user=user, dataset=action.dataset, kind=kind, params=params, reverts=action)
    was_manual_split = action.kind == BulkAction.Kind.SPLIT
    reverted = _apply(
        action=new_action,
        rows=rows,
        targets=targets,
        # Undoing a manual split gives the face back to automatic splitting; undoing an automatic
        # split leaves the (never touched) manual flag alone.
        split_manual=False if was_manual_split else None,
        exclusion_reason=f"restored by {BulkAction.Kind(kind).label.lower()} of action {action.pk}",
    )
    return RevertResult(action=new_action, reverted=reverted, conflicts=conflicts)


def bulk_action_undo_last(*, user: AbstractBaseUser, dataset: Dataset) -> RevertResult:
    """`z`: revert this person's latest action on this dataset that changed something and has
    not been reverted yet. Pressing it again goes further back. Identity merges and splits are
    left to the history's revert: `z` on the grid takes back labelling, not a decision made on
    another page."""
    action = (
        BulkAction.objects.filter(dataset=dataset, user=user, face_count__gt=0, reverted_by__isnull=True)
        .exclude(kind__in=[BulkAction.Kind.UNDO, *IDENTITY_KINDS])
        .exclude(params__has_key="identity_decision")
        .order_by("-created_at", "-id")
        .first()
    )
    if action is None:
        raise NoFaces("Nothing to undo: you have no earlier change on this dataset.")
    return bulk_action_revert(user=user, action=action, kind=BulkAction.Kind.UNDO)


# --- Identity clusters -----------------------------------------------------------------------------

IDENTITY_KINDS = (BulkAction.Kind.SAME_PERSON, BulkAction.Kind.DIFFERENT_PEOPLE)
IDENTITY_SAMPLE = 8  # face ids an action keeps for the history's thumbnails


@transaction.atomic
def identities_merge(*, user: AbstractBaseUser | None, dataset: Dataset, clusters: Iterable) -> BulkAction:
    """ "Same person": two or more identity clusters become one (embeddings.identities keeps the
    decision, so a recomputation of the clusters keeps it too), recorded in the history. Raises
    InvalidChange (fewer than two clusters, or one that no longer exists)."""
    from embeddings.identities import IdentityError, identity_clusters_merge

    try:
        decision, moved = identity_clusters_merge(dataset_id=dataset.pk, clusters=clusters)
    except IdentityError as exc:
        raise InvalidChange(exc.message) from exc
    numbers = sorted({int(c) for c in clusters})  # checked by the merge: ASCII digits only
    action = _new_action(
        user=user,
        dataset=dataset,
        kind=BulkAction.Kind.SAME_PERSON,
        params={
            "identity_decision": decision.pk,
            "decision_active_before": False,
            "clusters": numbers,
            "into": numbers[0],
            "face_total": len(decision.face_ids),
            "sample": decision.face_ids[:IDENTITY_SAMPLE],
        },
    )
    action.face_count = moved
    action.save(update_fields=["face_count"])
    return action


@transaction.atomic
def identities_split(*, user: AbstractBaseUser | None, dataset: Dataset, cluster, faces: Iterable) -> BulkAction:
    """ "These are different people": the picked faces of a cluster leave it for a cluster of
    their own (kept across recomputations, recorded in the history). Raises InvalidChange."""
    from embeddings.identities import IdentityError, identity_cluster_split
    from embeddings.models import FaceIdentity

    try:
        decision, moved = identity_cluster_split(dataset_id=dataset.pk, cluster=cluster, face_ids=faces)
    except IdentityError as exc:
        raise InvalidChange(exc.message) from exc
    new_cluster = FaceIdentity.objects.filter(face_id=decision.face_ids[0]).values_list("cluster", flat=True).first()
    action = _new_action(
        user=user,
        dataset=dataset,
        kind=BulkAction.Kind.DIFFERENT_PEOPLE,
        params={
            "identity_decision": decision.pk,
            "decision_active_before": False,
            "cluster": int(cluster),
            "new_cluster": new_cluster,
            "face_total": len(decision.face_ids),
            "sample": decision.face_ids[:IDENTITY_SAMPLE],
        },
    )
    action.face_count = moved
    action.save(update_fields=["face_count"])
    return action


def _identity_revert(*, user: AbstractBaseUser | None, action: BulkAction, kind: str) -> RevertResult:
    """Revert a merge or split (or the revert of one): the decision goes back to the state it had
    before `action`, and the clusters are corrected again from the computed ones, so later
    decisions still hold (there are no conflicts to skip)."""
    from embeddings.identities import identity_decision_activate

    decision_id = action.params["identity_decision"]
    before = bool(action.params.get("decision_active_before"))
    moved = identity_decision_activate(decision_id=decision_id, active=before)
    params = {
        "reverted_action": action.pk,
        "identity_decision": decision_id,
        "decision_active_before": not before,
        "conflict_count": 0,
        "sample": action.params.get("sample", []),
    }
    new_action = _new_action(user=user, dataset=action.dataset, kind=kind, params=params, reverts=action)
    new_action.face_count = moved
    new_action.save(update_fields=["face_count"])
    return RevertResult(action=new_action, reverted=moved)


def identity_revert_preview(*, action: BulkAction) -> dict:
    """What reverting an identity action would do: the faces that would change cluster."""
    from embeddings.identities import identity_decision_effect
    from embeddings.models import IdentityDecision

    decision = IdentityDecision.objects.get(pk=action.params["identity_decision"])
    before = bool(action.params.get("decision_active_before"))
    return {
        "restorable": identity_decision_effect(decision=decision, active=before),
        "identity": True,
        "changes": [],
        "conflicts": [],
        "conflict_faces": 0,
        "more": 0,
        "next_after": None,
        "conflicts_next_after": None,
        "first_shown": 0,
        "last_shown": 0,
    }


# --- Curation ---------------------------------------------------------------------------------------

RULE_FIELDS = {
    "min_size_px": "size below {} px",
    "min_sharpness": "sharpness below {}",
    "max_abs_yaw": "yaw beyond ±{}°",
    "max_abs_roll": "roll beyond ±{}°",
    "min_detector_score": "detector score below {}",
}


def _threshold_rule(*, dataset: Dataset, thresholds: dict) -> tuple[QuerySet, dict, str]:
    """The faces an exclusion rule would exclude (included faces failing any threshold), the clean
    thresholds and the reason in words. Shared by the rule itself and its preview."""
    clean: dict[str, float] = {}
    for key, value in thresholds.items():
        if value in (None, ""):
            continue
        if key not in RULE_FIELDS:
            raise InvalidChange(f"Unknown rule “{key}”: use {', '.join(RULE_FIELDS)}.")
        clean[key] = _finite_number(value, f"The threshold for {key}")
    if not clean:
        raise InvalidChange("Give at least one threshold.")
    failing = Q()
    if "min_size_px" in clean:
        failing |= Q(size_px__lt=clean["min_size_px"])
    if "min_sharpness" in clean:
        failing |= Q(sharpness__lt=clean["min_sharpness"])
    if "min_detector_score" in clean:
        failing |= Q(detector_score__lt=clean["min_detector_score"])
    qs = Face.objects.filter(dataset=dataset, is_excluded=False)
    if "max_abs_yaw" in clean:
        qs = qs.annotate(abs_yaw=Abs("yaw"))
        failing |= Q(abs_yaw__gt=clean["max_abs_yaw"])
    if "max_abs_roll" in clean:
        qs = qs.annotate(abs_roll=Abs("roll"))
        failing |= Q(abs_roll__gt=clean["max_abs_roll"])
    reason = "rule: " + ", ".join(RULE_FIELDS[k].format(v) for k, v in clean.items())
    return Face.objects.filter(pk__in=qs.filter(failing).values("pk")), clean, reason


@transaction.atomic
def exclusion_rule_apply(
    *, user: AbstractBaseUser | None, dataset: Dataset, thresholds: dict, confirmed_large: bool = False
) -> BulkAction:
    """Exclude every included face failing any threshold (a face with an unknown metric, e.g. no
    detector score on a whole-image crop, is not excluded by that metric). Reversible by revert.
    Raises NeedsConfirmation above CURATOR_MAX_ACTION_SHARE unless `confirmed_large`."""
    ids, clean, reason = _threshold_rule(dataset=dataset, thresholds=thresholds)
    return _rule_action(
        user=user,
        dataset=dataset,
        faces=ids,
        params={"rule": "thresholds", **clean},
        reason=reason,
        confirmed_large=confirmed_large,
    )


def _rule_action(*, user, dataset, faces, params, reason, confirmed_large: bool) -> BulkAction:
    rows = _lock_rows(faces)
    action_share_check(dataset=dataset, face_count=len(rows), confirmed_large=confirmed_large)
    action = _new_action(user=user, dataset=dataset, kind=BulkAction.Kind.RULE, params={**params, "reason": reason})
    _apply(
        action=action,
        rows=rows,
        targets=dict.fromkeys(rows, {"is_excluded": True}),
        split_manual=None,
        exclusion_reason=reason,
    )
    return action


def _min_per_class_rule(*, dataset: Dataset, minimum) -> tuple[QuerySet, int, list[str], str]:
    """The faces the minimum-per-class rule would exclude, the minimum, the small classes and the
    reason in words."""
    if minimum is None:
        minimum = dataset.min_faces_per_class
    try:
        minimum = int(minimum)
    except (TypeError, ValueError) as exc:
        raise InvalidChange(f"The minimum must be a whole number, not “{minimum}”.") from exc
    if minimum < 1:
        raise InvalidChange("The minimum must be at least 1.")
    from django.db.models import Count

    counts = dict(
        Face.objects.filter(dataset=dataset, is_excluded=False)
        .exclude(label="")
        .values_list("label")
        .annotate(n=Count("id"))
        .order_by()
    )
    small = sorted(label for label, n in counts.items() if n < minimum)
    faces = Face.objects.filter(dataset=dataset, is_excluded=False, label__in=small)
    return faces, minimum, small, f"rule: class with fewer than {minimum} faces"


@transaction.atomic
def min_per_class_rule_apply(
    *, user: AbstractBaseUser | None, dataset: Dataset, minimum: int | None = None, confirmed_large: bool = False
) -> BulkAction:
    """The original scripts' rule: a class with fewer than `minimum` included faces is too small
    to learn, so its faces are excluded (default: the dataset's `min_faces_per_class`).
    Raises NeedsConfirmation above CURATOR_MAX_ACTION_SHARE unless `confirmed_large`."""
    faces, minimum, small, reason = _min_per_class_rule(dataset=dataset, minimum=minimum)
    return _rule_action(
        user=user,
        dataset=dataset,
        faces=faces,
        params={"rule": "min_per_class", "minimum": minimum, "classes": small},
        reason=reason,
        confirmed_large=confirmed_large,
    )


PREVIEW_SAMPLE = 24


@dataclass
class ActionPreview:
    """What an action would do before it is done: how many faces, their share of the dataset,
    whether that needs the second confirmation, and a sample of the faces."""

    count: int
    total: int
    reason: str
    sample: list[Face]
    params: dict = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0

    @property
    def percent(self) -> str:
        return f"{self.share * 100:.1f}"

    @property
    def needs_confirmation(self) -> bool:
        return self.count > settings.CURATOR_MAX_ACTION_SHARE * self.total


def _preview(*, dataset: Dataset, faces: QuerySet, reason: str, params: dict, sample: int) -> ActionPreview:
    count = faces.count()
    rows = list(Face.objects.filter(pk__in=faces.values("pk")).order_by("id")[:sample]) if count else []
    return ActionPreview(
        count=count, total=Face.objects.filter(dataset=dataset).count(), reason=reason, sample=rows, params=params
    )


def exclusion_rule_preview(*, dataset: Dataset, thresholds: dict, sample: int = PREVIEW_SAMPLE) -> ActionPreview:
    """What `exclusion_rule_apply` would exclude now; nothing is written."""
    faces, clean, reason = _threshold_rule(dataset=dataset, thresholds=thresholds)
    return _preview(dataset=dataset, faces=faces, reason=reason, params=clean, sample=sample)


def min_per_class_rule_preview(*, dataset: Dataset, minimum=None, sample: int = PREVIEW_SAMPLE) -> ActionPreview:
    """What `min_per_class_rule_apply` would exclude now; nothing is written."""
    faces, minimum, small, reason = _min_per_class_rule(dataset=dataset, minimum=minimum)
    return _preview(
        dataset=dataset, faces=faces, reason=reason, params={"minimum": minimum, "classes": small}, sample=sample
    )


def faces_update_preview(
    *, dataset: Dataset, faces: QuerySet, changes: dict, sample: int = PREVIEW_SAMPLE
) -> ActionPreview:
    """What `faces_update` with these changes would change among `faces` (a queryset: "all faces
    matching the filter"): faces already in the target state are not counted, as they would not
    change."""
    clean = changes_validate(dataset=dataset, changes=changes)
    changing = faces.filter(dataset=dataset).exclude(**clean)
    reason = ", ".join(f"{FIELD_WORDS[k]}: {value_words(k, _value_str(v))}" for k, v in clean.items())
    return _preview(dataset=dataset, faces=changing, reason=reason, params=clean, sample=sample)


def faces_changing_count(*, dataset: Dataset, faces: QuerySet, changes: dict) -> int:
    """How many of `faces` the changes would actually change (the guard's count)."""
    clean = changes_validate(dataset=dataset, changes=changes)
    return faces.filter(dataset=dataset).exclude(**clean).count()


# --- Words for people -------------------------------------------------------------------------------

FIELD_WORDS = {"label": "label", "is_unsure": "unsure", "is_excluded": "excluded", "split": "split"}


def value_words(field_name: str, text: str) -> str:
    """A stored event value as a person reads it: "" label -> unlabelled, "true" -> yes."""
    if field_name in ("is_unsure", "is_excluded"):
        return "yes" if text == "true" else "no"
    if field_name == "split":
        return text or "none"
    return text or "unlabelled"


def change_words(field_name: str, old: str, new: str) -> str:
    """ "label: male → female", "excluded: yes → no"."""
    return f"{FIELD_WORDS.get(field_name, field_name)}: {value_words(field_name, old)} → {value_words(field_name, new)}"


def _events_with_current_values(action: BulkAction) -> QuerySet:
    """The action's events, each with `now_value`: its field's current value on the face, as
    events store values (booleans as "true"/"false"), so conflicts are found by the database."""

    def flag(name: str):
        return Case(When(**{f"face__{name}": True}, then=Value("true")), default=Value("false"))

    now_value = Case(
        When(field="label", then=F("face__label")),
        When(field="split", then=F("face__split")),
        When(field="is_unsure", then=flag("is_unsure")),
        When(field="is_excluded", then=flag("is_excluded")),
        output_field=CharField(),
    )
    return LabelEvent.objects.filter(action=action).annotate(now_value=now_value)


def bulk_action_revert_preview(
    *, action: BulkAction, limit: int = 200, after: int | None = None, conflicts_after: int | None = None
) -> dict:
    """What reverting `action` would do, per face, in words: the faces it gives back their earlier
    values ("label: female → male", from now to after the revert) and the faces changed again
    since (skipped by the revert, so no later change is lost), with what they are now.

    Counted by the database and paginated by face id (keyset): `limit` faces of each list from
    the face after `after` / `conflicts_after`; `next_after` / `conflicts_next_after` continue
    them (None on the last page). A 100,000-face action reads two pages of rows, not 100,000."""
    if "identity_decision" in (action.params or {}):
        return identity_revert_preview(action=action)
    events = _events_with_current_values(action)
    differs = ~Q(now_value=F("new_value"))
    # Both counts in one pass over the action's events (a face conflicts when any of its fields does).
    counts = events.aggregate(
        faces=Count("face_id", distinct=True), conflicts=Count("face_id", distinct=True, filter=differs)
    )
    conflict_faces = counts["conflicts"]
    restorable = counts["faces"] - conflict_faces

    # Pages walk the (action, face) index in face order and stop after `limit` faces.
    per_face = events.order_by("face_id").values("face_id").annotate(conflicted=Count("id", filter=differs))
    page_ids = list(
        per_face.filter(face_id__gt=after or 0, conflicted=0).values_list("face_id", flat=True)[: limit + 1]
    )
    conflict_ids = list(
        per_face.filter(face_id__gt=conflicts_after or 0, conflicted__gt=0).values_list("face_id", flat=True)[
            : limit + 1
        ]
    )
    next_after = page_ids[limit - 1] if len(page_ids) > limit else None
    conflicts_next_after = conflict_ids[limit - 1] if len(conflict_ids) > limit else None
    page_ids, conflict_ids = page_ids[:limit], conflict_ids[:limit]
    faces = Face.objects.filter(pk__in=[*page_ids, *conflict_ids]).only("id", "crop", "dataset_id").in_bulk()
    by_face: dict[int, list[tuple[str, str, str, str]]] = defaultdict(list)
    rows = events.filter(face_id__in=[*page_ids, *conflict_ids]).order_by("face_id", "id")
    for face_id, name, old, new, now in rows.values_list("face_id", "field", "old_value", "new_value", "now_value"):
        by_face[face_id].append((name, old, new, now))
    changes = [
        {"face": faces[f], "changes": [change_words(n, new, old) for n, old, new, _ in by_face[f]]}
        for f in page_ids
        if f in faces
    ]
    conflict_rows = [
        {
            "face": faces[f],
            "changes": [
                f"{FIELD_WORDS[n]}: this action set {value_words(n, new)}, "
                f"now {value_words(n, now)}, before it {value_words(n, old)}"
                for n, old, new, now in by_face[f]
                if now != new
            ],
        }
        for f in conflict_ids
        if f in faces
    ]
    shown_before = 0
    if after:
        shown_before = per_face.filter(face_id__lte=after, conflicted=0).count()
    return {
        "restorable": restorable,
        "changes": changes,
        "conflicts": conflict_rows,
        "conflict_faces": conflict_faces,
        "more": max(0, restorable - shown_before - len(changes)),
        "next_after": next_after,
        "conflicts_next_after": conflicts_next_after,
        "first_shown": shown_before + 1 if changes else 0,
        "last_shown": shown_before + len(changes),
    }


def _finite_number(value, what: str) -> float:
    """`value` as a float; InvalidChange naming `what` for anything else, NaN and infinities
    included (float() takes "nan" and "inf", which no threshold, share or ratio can mean)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidChange(f"{what} must be a number, not “{value}”.") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidChange(f"{what} must be a finite number, not “{value}”.")
    return number


def _ratios_validate(ratios) -> tuple[float, float, float]:
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__iter__"):
        raise InvalidChange("Split ratios must be three numbers (train, validation, test).")
    try:
        values = tuple(_finite_number(r, "A split ratio") for r in ratios)
    except InvalidChange as exc:
        raise InvalidChange(
            f"Split ratios must be three finite numbers (train, validation, test): {exc.message}"
        ) from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise InvalidChange("Split ratios must be three non-negative numbers with a positive sum.")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def _split_targets(
    *, dataset: Dataset, seed, ratios, duplicate_distance: int, all_rows: dict
) -> tuple[dict[int, dict], dict]:
    """The split each face gets from `splits_assign` (only faces whose split changes or that get
    one), and the action's params. `all_rows` are the dataset's rows (locked when applying)."""
    from labeling.selectors import face_groups_for_split

    shares = _ratios_validate(ratios)
    try:
        seed = int(seed)
    except (TypeError, ValueError) as exc:
        raise InvalidChange(f"The seed must be a whole number, not “{seed}”.") from exc
    eligible = dict(
        Face.objects.filter(dataset=dataset, is_excluded=False, is_unsure=False)
        .exclude(label="")
        .values_list("id", "split_manual")
    )
    manual = {
        fid for fid, m in Face.objects.filter(dataset=dataset, split_manual=True).values_list("id", "split_manual")
    }
    grouping = face_groups_for_split(dataset=dataset, face_ids=set(eligible), duplicate_distance=duplicate_distance)
    groups = grouping.groups
    names = ("train", "val", "test")
    targets: dict[int, dict] = {}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(names, 0))
    free_groups: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        labels = [all_rows[f].label for f in group]
        label = max(sorted(set(labels)), key=labels.count)
        fixed = [all_rows[f].split for f in group if f in manual and all_rows[f].split]
        if fixed:
            # A hand-set split wins; the rest of the group follows it so duplicates stay together.
            chosen = max(sorted(set(fixed)), key=fixed.count)
            for f in group:
                if f not in manual:
                    targets[f] = {"split": chosen}
            counts[label][chosen] += len(group)
        else:
            free_groups[label].append(group)
    rng = random.Random(seed)
    for label in sorted(free_groups):
        label_groups = sorted(free_groups[label], key=lambda g: g[0])
        rng.shuffle(label_groups)
        total = sum(len(g) for g in label_groups) + sum(counts[label].values())
        goal = {n: share * total for n, share in zip(names, shares, strict=True)}
        for group in label_groups:
            # The split furthest below its goal, relative to the goal; ties go in train/val/test order.
            chosen = max(names, key=lambda n: (goal[n] - counts[label][n]) / goal[n] if goal[n] else -1e9)
            counts[label][chosen] += len(group)
            for f in group:
                targets[f] = {"split": chosen}
    for f, row in all_rows.items():
        if f not in targets and f not in manual and f not in eligible and row.split:
            targets[f] = {"split": ""}
    params = {"seed": seed, "ratios": list(shares), "duplicate_distance": duplicate_distance}
    if grouping.clusters_not_kept:
        params["identity_clusters_not_kept"] = grouping.clusters_not_kept
    # Faces already on their side do not change (and are not counted as moved).
    targets = {f: t for f, t in targets.items() if all_rows[f].split != t["split"]}
    return targets, params


def splits_assign_preview(
    *, dataset: Dataset, seed=0, ratios=(0.7, 0.15, 0.15), duplicate_distance: int = 6, sample: int = PREVIEW_SAMPLE
) -> ActionPreview:
    """What `splits_assign` would do now, as every other bulk change is previewed: how many faces
    would get or change a split, their share, and a sample; nothing is written."""
    rows = (
        Face.objects.filter(dataset=dataset)
        .order_by("id")
        .values_list("id", "version", "label", "is_unsure", "is_excluded", "split")
    )
    all_rows = {r[0]: _Row(*r) for r in rows}
    targets, params = _split_targets(
        dataset=dataset, seed=seed, ratios=ratios, duplicate_distance=duplicate_distance, all_rows=all_rows
    )
    moves: dict[str, int] = defaultdict(int)
    for face_id, target in targets.items():
        moves[f"{all_rows[face_id].split or 'none'} → {target['split'] or 'none'}"] += 1
    params["moves"] = dict(sorted(moves.items()))
    return _preview(
        dataset=dataset,
        faces=Face.objects.filter(pk__in=list(targets)),
        reason=f"splits with seed {params['seed']}",
        params=params,
        sample=sample,
    )


@transaction.atomic
def splits_assign(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    seed: int = 0,
    ratios=(0.7, 0.15, 0.15),
    duplicate_distance: int = 6,
    confirmed_large: bool = True,
) -> BulkAction:
    """Stratified, seeded train/val/test split of the included, labelled, sure faces.

    Faces that must not straddle splits (near-duplicates: same file, region pHash within
    `duplicate_distance` bits or same-shot descriptors; the same known identity or identity cluster
    of embeddings, as people corrected it on the identities page; the same photo) form one group;
    groups are shuffled with the seed and dealt per class to the split furthest below its target.
    A face whose split was set by hand keeps it, and its group follows it. Faces not eligible lose
    an automatic split. Same data + same seed = same split. Over CURATOR_MAX_ACTION_SHARE of the
    dataset it needs `confirmed_large` (the pages preview first: splits_assign_preview).
    """
    all_rows = _lock_rows(Face.objects.filter(dataset=dataset))
    targets, params = _split_targets(
        dataset=dataset, seed=seed, ratios=ratios, duplicate_distance=duplicate_distance, all_rows=all_rows
    )
    action_share_check(dataset=dataset, face_count=len(targets), confirmed_large=confirmed_large)
    action = _new_action(user=user, dataset=dataset, kind=BulkAction.Kind.AUTO_SPLIT, params=params)
    _apply(action=action, rows=all_rows, targets=targets, split_manual=None)
    return action


def duplicates_keep_check(*, dataset: Dataset, keep, faces: Iterable) -> tuple[int, list[int]]:
    """(kept face, faces "keep this one" would exclude): the other faces of the group that are
    near-duplicates of the kept face now (embeddings.duplicates) and still included. Raises
    InvalidChange for a face outside the group or no longer a duplicate of it."""
    from embeddings.duplicates import pair_evidence
    from embeddings.selectors import duplicate_records

    try:
        ids = {int(f) for f in faces}
        keep = int(keep)
    except (TypeError, ValueError) as exc:
        raise InvalidChange("Face ids must be whole numbers.") from exc
    if keep not in ids:
        raise InvalidChange(f"Face {keep} is not in this group.")
    others = sorted(ids - {keep})
    if not others:
        raise NoFaces("The group has no other face to exclude.")
    found = set(Face.objects.filter(dataset=dataset, pk__in=[keep, *others]).values_list("pk", flat=True))
    missing = len({keep, *others} - found)
    if missing:
        raise InvalidChange(f"{missing} of the {len(ids)} face ids are not faces of this dataset.")
    # The kept face against each other face, now: the pairs' tests are pairwise, so comparing
    # the group's few faces is the whole-dataset answer for them, without the dataset's graph.
    pairs = pair_evidence(duplicate_records(dataset=dataset, face_ids=[keep, *others]))
    unmatched = [f for f in others if (min(f, keep), max(f, keep)) not in pairs]
    if unmatched:
        raise InvalidChange(
            f"Face{'s' if len(unmatched) > 1 else ''} {', '.join(map(str, unmatched))} "
            f"{'are' if len(unmatched) > 1 else 'is'} not a near-duplicate of face {keep} (any more); "
            "reload the duplicates page."
        )
    included = set(Face.objects.filter(pk__in=others, is_excluded=False).values_list("pk", flat=True))
    return keep, [f for f in others if f in included]


@transaction.atomic
def duplicates_keep_one(
    *, user: AbstractBaseUser | None, dataset: Dataset, keep, faces: Iterable, confirmed_large: bool = False
) -> BulkAction:
    """Keep face `keep` of a near-duplicate group and exclude the others that are duplicates of
    it (checked again here: the page may be old). Over CURATOR_MAX_ACTION_SHARE of the dataset it
    needs `confirmed_large` (action_share_check)."""
    keep, others = duplicates_keep_check(dataset=dataset, keep=keep, faces=faces)
    if not others:
        raise NoFaces("The other faces of this group are excluded already.")
    action_share_check(dataset=dataset, face_count=len(others), confirmed_large=confirmed_large)
    qs, asked = _face_ids(dataset, others)
    rows = _lock_rows(qs)
    _check_found(rows, asked)
    action = _new_action(
        user=user,
        dataset=dataset,
        kind=BulkAction.Kind.DEDUPLICATE,
        params={"kept": keep, "faces": sorted([keep, *others])},
    )
    _apply(
        action=action,
        rows=rows,
        targets=dict.fromkeys(rows, {"is_excluded": True}),
        split_manual=None,
        exclusion_reason=f"near-duplicate of face {keep}",
    )
    return action


# --- Export -----------------------------------------------------------------------------------------


EXPORT_PART_FACES = 5000
EXPORT_MAX_RESUMES = 3
EXPORT_FIXED_COLUMNS = [
    "face_id",
    "file",
    "label",
    "split",
    "dataset_split",
    "is_unsure",
    "source_image",
    "face_index",
    "size_px",
    "sharpness",
    "yaw",
    "roll",
    "detector_score",
    "landmark_fit",
]


def export_job_create(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    splits: str = "dataset",
    include_unassigned: bool = True,
    name_suffix: str = "",
    enqueue: bool = True,
) -> ExportJob:
    """Queue an export of the included, labelled faces (`export_job_run` does the work; the task
    starts once this transaction commits). `splits`: "dataset" or "version:<id>". NoFaces at once
    when no face could be exported (the person is told now, not by a failed job)."""
    if not Face.objects.filter(dataset=dataset, is_excluded=False).exclude(label="").exists():
        raise NoFaces("There are no included, labelled faces to export.")
    job = ExportJob.objects.create(
        dataset=dataset,
        created_by=user if user is not None and user.is_authenticated else None,
        splits=splits,
        include_unassigned=include_unassigned,
        name_suffix=name_suffix,
    )
    if enqueue:
        from labeling.tasks import export_run

        transaction.on_commit(lambda: export_run.delay(job.pk))
    return job


def _export_splits_map(job: ExportJob) -> dict[int, str] | None:
    """{face id: split} of the version the job exports the splits of (None: the faces' own)."""
    from labeling.extensions import prediction_provider

    if not job.splits.startswith("version:"):
        return None
    provider = prediction_provider()
    version = provider.version(dataset=job.dataset, version_id=int(job.splits.split(":", 1)[1]))
    splits = provider.version_splits(model_version=version) if version is not None else None
    if splits is None:
        raise InvalidChange("That model version has no record of its splits to export.")
    return splits


def _export_faces(job: ExportJob, splits: dict[int, str] | None) -> QuerySet:
    faces = Face.objects.filter(dataset=job.dataset, is_excluded=False).exclude(label="")
    if not job.include_unassigned:
        if splits is None:
            faces = faces.exclude(split="")
        else:
            faces = faces.filter(pk__in=_ids_in([i for i, split in splits.items() if split]))
    return faces.order_by("id")


def _export_plan(job: ExportJob, splits: dict[int, str] | None) -> None:
    """Fix the parts (by face id) and the manifest's columns once, at the first run."""
    faces = _export_faces(job, splits)
    boundaries, total = [], 0
    for face_id in faces.values_list("id", flat=True).iterator(chunk_size=10_000):
        total += 1
        if total % EXPORT_PART_FACES == 0:
            boundaries.append(face_id)
    if total % EXPORT_PART_FACES:
        boundaries.append(face_id)
    if not total:
        raise NoFaces("There are no included, labelled faces to export.")
    image_ids = faces.values("image_id")
    if connection.vendor == "postgresql":
        # The keys over a million photos: the database lists them, nothing is loaded.
        with connection.cursor() as cursor:
            sql, params = image_ids.query.sql_with_params()
            cursor.execute(
                f"SELECT DISTINCT jsonb_object_keys(metadata) FROM curator_sourceimage WHERE id IN ({sql}) "
                "AND jsonb_typeof(metadata) = 'object'",
                params,
            )
            keys = sorted(row[0] for row in cursor.fetchall())
    else:
        keys = sorted(
            {
                k
                for meta in SourceImage.objects.filter(pk__in=image_ids).values_list("metadata", flat=True).iterator()
                for k in (meta or {})
            }
        )
    job.boundaries, job.total = boundaries, total
    job.columns = [*EXPORT_FIXED_COLUMNS, *(f"meta_{k}" for k in keys)]
    job.save(update_fields=["boundaries", "total", "columns"])


def _export_parts_prefix(job: ExportJob) -> str:
    return f"datasets/{job.dataset_id}/exports/.parts/{job.pk}"


def _export_part_write(job: ExportJob, k: int, splits: dict[int, str] | None) -> int:
    """Write part k (its crops and its manifest rows, a zip of its own) to storage; returns its
    face count. Rows are read in chunks and files copied in blocks: memory does not grow with
    the export."""
    low = job.boundaries[k - 1] if k else 0
    faces = (
        _export_faces(job, splits)
        .filter(pk__gt=low, pk__lte=job.boundaries[k])
        .select_related("image")
        .only(
            *("id", "label", "split", "is_unsure", "index", "crop", "size_px", "sharpness", "yaw", "roll"),
            *("detector_score", "landmark_fit", "image__original_name", "image__metadata"),
        )
    )
    meta_keys = [c[len("meta_") :] for c in job.columns[len(EXPORT_FIXED_COLUMNS) :]]
    count = 0
    with tempfile.TemporaryFile() as tmp, tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as manifest:
        writer = csv.writer(manifest)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for face in faces.iterator(chunk_size=1000):
                split = splits.get(face.pk, "") if splits is not None else face.split
                name = f"{split or 'unassigned'}/{face.label}/{face.pk}.jpg"
                try:
                    with default_storage.open(face.crop, "rb") as src, archive.open(name, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 16)
                except (FileNotFoundError, OSError):
                    name = ""  # the manifest says the crop is missing rather than failing the export
                meta = face.image.metadata or {}
                writer.writerow(
                    csv_row(
                        [
                            *(face.pk, name, face.label, split, face.split, int(face.is_unsure)),
                            *(face.image.original_name, face.index, face.size_px, face.sharpness, face.yaw),
                            *(face.roll, face.detector_score, face.landmark_fit),
                            *(meta.get(k, "") if isinstance(meta, dict) else "" for k in meta_keys),
                        ]
                    )
                )
                count += 1
            manifest.seek(0)
            with archive.open("manifest-part.csv", "w") as dst:
                for line in manifest:
                    dst.write(line.encode("utf-8"))
        tmp.seek(0)
        path = f"{_export_parts_prefix(job)}/part-{k:05d}.zip"
        if default_storage.exists(path):  # a part the dead worker had saved but not counted
            default_storage.delete(path)
        default_storage.save(path, File(tmp, name=path))
    return count


def _export_join(job: ExportJob) -> str:
    """The parts, in order, copied block by block into one zip (manifest.csv last, one header)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    suffix = f"-{job.name_suffix}" if job.name_suffix else ""
    path = f"datasets/{job.dataset_id}/exports/{job.dataset_id}-{stamp}{suffix}.zip"
    parts = [f"{_export_parts_prefix(job)}/part-{k:05d}.zip" for k in range(len(job.boundaries))]
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for part in parts:
                with default_storage.open(part, "rb") as handle, zipfile.ZipFile(handle) as source:
                    for info in source.infolist():
                        if info.filename == "manifest-part.csv":
                            continue
                        with source.open(info) as src, archive.open(info.filename, "w", force_zip64=True) as dst:
                            shutil.copyfileobj(src, dst, 1 << 16)
            with archive.open("manifest.csv", "w", force_zip64=True) as dst:
                header = io.StringIO()
                csv.writer(header).writerow(csv_row(job.columns))  # metadata keys come from labels.csv headers
                dst.write(header.getvalue().encode("utf-8"))
                for part in parts:
                    with (
                        default_storage.open(part, "rb") as handle,
                        zipfile.ZipFile(handle) as source,
                        source.open("manifest-part.csv") as src,
                    ):
                        shutil.copyfileobj(src, dst, 1 << 16)
        tmp.seek(0)
        path = default_storage.save(path, File(tmp, name=path))
    for part in parts:
        default_storage.delete(part)
    return path


def export_job_run(*, job_id: int, after_part=None) -> ExportJob:
    """Build the job's zip, continuing after its last finished part (a re-delivered task or a
    resumed job does not start again). `after_part(job)`, called once each part is counted, is
    for tests that stop a run half-way."""
    job = ExportJob.objects.select_related("dataset").filter(pk=job_id).first()
    if job is None or job.is_finished:
        return job
    now = timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.RUNNING, started_at=job.started_at or now, heartbeat_at=now
    )
    job.refresh_from_db()
    try:
        splits = _export_splits_map(job)
        if not job.boundaries:
            job.step = "listing the faces"
            job.save(update_fields=["step"])
            _export_plan(job, splits)
        for k in range(job.parts_done, len(job.boundaries)):
            job.step = f"writing part {k + 1} of {len(job.boundaries)}"
            count = _export_part_write(job, k, splits)
            job.parts_done, job.done = k + 1, job.done + count
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["parts_done", "done", "step", "heartbeat_at"])
            if after_part is not None:
                after_part(job)
        job.step = "joining the parts into one zip"
        job.save(update_fields=["step"])
        job.path = _export_join(job)
    except LabelingError as exc:
        job.mark_failed(exc.message)
        return job
    job.status, job.step, job.finished_at = ExportJob.SUCCEEDED, "", timezone.now()
    job.save(update_fields=["path", "status", "step", "finished_at"])
    return job


def export_job_check_stale(*, job: ExportJob) -> bool:
    """A running export whose worker stopped reporting: queue it again (it continues after its
    last finished part), or fail it after EXPORT_MAX_RESUMES."""
    if job.resumed_count >= EXPORT_MAX_RESUMES:
        return job.mark_failed(
            f"The export's worker stopped {job.resumed_count + 1} times; start the export again.",
            if_heartbeat_unchanged=True,
        )
    rows = ExportJob.objects.filter(pk=job.pk, status=ExportJob.RUNNING, heartbeat_at=job.heartbeat_at).update(
        resumed_count=F("resumed_count") + 1, heartbeat_at=timezone.now()
    )
    if rows:
        from labeling.tasks import export_run

        export_run.delay(job.pk)
    return bool(rows)


def export_create(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    include_unassigned: bool = True,
    splits: str = "dataset",
    name_suffix: str = "",
) -> str:
    """Write a zip of the included, labelled faces in folder-per-class layout per split
    (`train/female/123.jpg`; faces without a split under `unassigned/` when asked) plus
    `manifest.csv` with labels, splits, metadata and quality, here and now (the API and scripts;
    the pages queue an ExportJob). Returns its storage path. `splits` "version:<id>" exports the
    splits that version was trained with (which a training job assigns for its own use without
    changing the faces) instead of the faces' own; the manifest keeps both (`split`: the one
    exported, `dataset_split`: the face's own). Written part by part like a background export, so
    memory stays flat at a million faces."""
    job = export_job_create(
        user=user,
        dataset=dataset,
        splits=splits,
        include_unassigned=include_unassigned,
        name_suffix=name_suffix,
        enqueue=False,
    )
    job = export_job_run(job_id=job.pk)
    if job.status != ExportJob.SUCCEEDED:
        message = job.error
        job.delete()
        if "no included, labelled faces" in message:
            raise NoFaces(message)
        raise InvalidChange(message)
    return job.path


def dataset_class_keys_set(*, dataset: Dataset, keys: dict) -> Dataset:
    """Set the labeling key of each class (empty values fall back to the defaults)."""
    from labeling.keys import keys_validate

    clean = {name: str(key).strip().lower() for name, key in keys.items() if str(key or "").strip()}
    problems = keys_validate(list(dataset.classes), clean)
    if clean and len(clean) != len(dataset.classes):
        problems.append("Give a key for every class, or none to use the defaults.")
    if problems:
        raise InvalidChange(" ".join(problems))
    dataset.class_keys = clean
    dataset.save(update_fields=["class_keys", "updated_at"])
    return dataset
