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
import random
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Abs
from django.utils import timezone

from curator.models import Dataset, Face
from labeling.models import BulkAction, LabelEvent
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
    not been reverted yet. Pressing it again goes further back."""
    action = (
        BulkAction.objects.filter(dataset=dataset, user=user, face_count__gt=0, reverted_by__isnull=True)
        .exclude(kind__in=[BulkAction.Kind.UNDO])
        .order_by("-created_at", "-id")
        .first()
    )
    if action is None:
        raise NoFaces("Nothing to undo: you have no earlier change on this dataset.")
    return bulk_action_revert(user=user, action=action, kind=BulkAction.Kind.UNDO)


# --- Curation ---------------------------------------------------------------------------------------

RULE_FIELDS = {
    "min_size_px": "size below {} px",
    "min_sharpness": "sharpness below {}",
    "max_abs_yaw": "yaw beyond ±{}°",
    "max_abs_roll": "roll beyond ±{}°",
    "min_detector_score": "detector score below {}",
}


@transaction.atomic
def exclusion_rule_apply(*, user: AbstractBaseUser | None, dataset: Dataset, thresholds: dict) -> BulkAction:
    """Exclude every included face failing any threshold (a face with an unknown metric, e.g. no
    detector score on a whole-image crop, is not excluded by that metric). Reversible by revert."""
    clean: dict[str, float] = {}
    for key, value in thresholds.items():
        if value in (None, ""):
            continue
        if key not in RULE_FIELDS:
            raise InvalidChange(f"Unknown rule “{key}”: use {', '.join(RULE_FIELDS)}.")
        try:
            clean[key] = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidChange(f"The threshold for {key} must be a number, not “{value}”.") from exc
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
    ids = Face.objects.filter(pk__in=qs.filter(failing).values("pk"))
    return _rule_action(user=user, dataset=dataset, faces=ids, params={"rule": "thresholds", **clean}, reason=reason)


def _rule_action(*, user, dataset, faces, params, reason) -> BulkAction:
    rows = _lock_rows(faces)
    action = _new_action(user=user, dataset=dataset, kind=BulkAction.Kind.RULE, params={**params, "reason": reason})
    _apply(
        action=action,
        rows=rows,
        targets=dict.fromkeys(rows, {"is_excluded": True}),
        split_manual=None,
        exclusion_reason=reason,
    )
    return action


@transaction.atomic
def min_per_class_rule_apply(
    *, user: AbstractBaseUser | None, dataset: Dataset, minimum: int | None = None
) -> BulkAction:
    """The original scripts' rule: a class with fewer than `minimum` included faces is too small
    to learn, so its faces are excluded (default: the dataset's `min_faces_per_class`)."""
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
    reason = f"rule: class with fewer than {minimum} faces"
    return _rule_action(
        user=user,
        dataset=dataset,
        faces=faces,
        params={"rule": "min_per_class", "minimum": minimum, "classes": small},
        reason=reason,
    )


def _ratios_validate(ratios) -> tuple[float, float, float]:
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError) as exc:
        raise InvalidChange("Split ratios must be three numbers (train, validation, test).") from exc
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise InvalidChange("Split ratios must be three non-negative numbers with a positive sum.")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


@transaction.atomic
def splits_assign(
    *,
    user: AbstractBaseUser | None,
    dataset: Dataset,
    seed: int = 0,
    ratios=(0.7, 0.15, 0.15),
    duplicate_distance: int = 6,
) -> BulkAction:
    """Stratified, seeded train/val/test split of the included, labelled, sure faces.

    Faces that must not straddle splits (near-duplicates by phash, the same known identity, the
    same photo) form one group; groups are shuffled with the seed and dealt per class to the split
    furthest below its target. A face whose split was set by hand keeps it, and its group follows
    it. Faces not eligible lose an automatic split. Same data + same seed = same split.
    """
    from labeling.selectors import face_groups_for_split

    shares = _ratios_validate(ratios)
    try:
        seed = int(seed)
    except (TypeError, ValueError) as exc:
        raise InvalidChange(f"The seed must be a whole number, not “{seed}”.") from exc
    all_rows = _lock_rows(Face.objects.filter(dataset=dataset))
    eligible = dict(
        Face.objects.filter(dataset=dataset, is_excluded=False, is_unsure=False)
        .exclude(label="")
        .values_list("id", "split_manual")
    )
    manual = {
        fid for fid, m in Face.objects.filter(dataset=dataset, split_manual=True).values_list("id", "split_manual")
    }
    groups = face_groups_for_split(dataset=dataset, face_ids=set(eligible), duplicate_distance=duplicate_distance)
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
    action = _new_action(user=user, dataset=dataset, kind=BulkAction.Kind.AUTO_SPLIT, params=params)
    _apply(action=action, rows=all_rows, targets=targets, split_manual=None)
    return action


@transaction.atomic
def duplicates_keep_one(
    *, user: AbstractBaseUser | None, dataset: Dataset, keep: int, faces: Iterable[int]
) -> BulkAction:
    """Keep face `keep` of a near-duplicate group and exclude the others."""
    ids = {int(f) for f in faces}
    keep = int(keep)
    if keep not in ids:
        raise InvalidChange(f"Face {keep} is not in this group.")
    others = ids - {keep}
    if not others:
        raise NoFaces("The group has no other face to exclude.")
    qs, asked = _face_ids(dataset, others)
    rows = _lock_rows(qs)
    _check_found(rows, asked)
    action = _new_action(
        user=user, dataset=dataset, kind=BulkAction.Kind.DEDUPLICATE, params={"kept": keep, "faces": sorted(ids)}
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


def export_create(*, user: AbstractBaseUser | None, dataset: Dataset, include_unassigned: bool = True) -> str:
    """Write a zip of the included, labelled faces in folder-per-class layout per split
    (`train/female/123.jpg`; faces without a split under `unassigned/` when asked) plus
    `manifest.csv` with labels, splits, metadata and quality. Returns its storage path."""
    faces = (
        Face.objects.filter(dataset=dataset, is_excluded=False).exclude(label="").select_related("image").order_by("id")
    )
    if not include_unassigned:
        faces = faces.exclude(split="")
    rows = list(faces)
    if not rows:
        raise NoFaces("There are no included, labelled faces to export.")
    meta_keys = sorted({k for f in rows for k in (f.image.metadata or {})})
    columns = [
        "face_id",
        "file",
        "label",
        "split",
        "is_unsure",
        "source_image",
        "face_index",
        "size_px",
        "sharpness",
        "yaw",
        "roll",
        "detector_score",
        "landmark_fit",
        *(f"meta_{k}" for k in meta_keys),
    ]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = f"datasets/{dataset.pk}/exports/{dataset.pk}-{stamp}.zip"
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(columns)
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for face in rows:
                split = face.split or "unassigned"
                name = f"{split}/{face.label}/{face.pk}.jpg"
                try:
                    with default_storage.open(face.crop, "rb") as handle:
                        archive.writestr(name, handle.read())
                except (FileNotFoundError, OSError):
                    name = ""  # the manifest says the crop is missing rather than failing the export
                meta = face.image.metadata or {}
                writer.writerow(
                    [
                        face.pk,
                        name,
                        face.label,
                        face.split,
                        int(face.is_unsure),
                        face.image.original_name,
                        face.index,
                        face.size_px,
                        face.sharpness,
                        face.yaw,
                        face.roll,
                        face.detector_score,
                        face.landmark_fit,
                        *(meta.get(k, "") for k in meta_keys),
                    ]
                )
            archive.writestr("manifest.csv", manifest.getvalue())
        tmp.seek(0)
        return default_storage.save(path, File(tmp, name=path))


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
