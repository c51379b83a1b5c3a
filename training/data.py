"""Which faces a training job uses, with which labels and splits, checked before any training.

No TensorFlow here: the web process runs the same checks when a job is created, so a curator
hears about an impossible job at once instead of from a failed job minutes later."""

import csv
import io
import random
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curator.models import Dataset, Face
from curator.spreadsheet import csv_cell_read, csv_row

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


class TrainingDataError(ValueError):
    """The dataset cannot be trained on as it stands; the message says why and what to do."""


@dataclass
class Example:
    face_id: int
    crop: str
    label: str
    split: str
    split_assigned: bool  # True when the job chose the split (the face had none)
    metadata: dict = field(default_factory=dict)


@dataclass
class TrainingData:
    classes: list[str]
    examples: list[Example]
    notes: list[str] = field(default_factory=list)

    def of_split(self, split: str) -> list[Example]:
        return [e for e in self.examples if e.split == split]

    def labels(self, split: str) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[e.label] for e in self.of_split(split)], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {s: dict.fromkeys(self.classes, 0) for s in SPLITS}
        for e in self.examples:
            table[e.split][e.label] += 1
        return table


def age_band(age) -> str:
    try:
        age = int(float(age))
    except (TypeError, ValueError):
        return ""
    for high, name in ((12, "0-12"), (19, "13-19"), (39, "20-39"), (59, "40-59")):
        if age <= high:
            return name
    return "60+"


def quality_band(face: Face) -> str:
    """Coarse bands of crop sharpness (variance of the Laplacian), the quality figure every face has."""
    if face.sharpness is None:
        return ""
    if face.sharpness < 50:
        return "blurry"
    if face.sharpness < 200:
        return "medium"
    return "sharp"


def face_slices(face: Face) -> dict[str, str]:
    """Metadata slices for the per-slice evaluation: age band, race, source, quality band."""
    meta = {str(k).lower(): v for k, v in (face.image.metadata or {}).items()}
    slices = {
        "age_band": age_band(meta.get("age")),
        "race": str(meta.get("race") or ""),
        "source": str(meta.get("source") or ""),
        "quality": quality_band(face),
    }
    return {k: v for k, v in slices.items() if v}


def stratified_split(face_ids_by_label: dict[str, list[int]], seed: int) -> dict[int, str]:
    """Seeded 70/15/15 split within every class, so each split keeps the class balance."""
    assignment: dict[int, str] = {}
    for label in sorted(face_ids_by_label):
        ids = sorted(face_ids_by_label[label])
        random.Random(f"{seed}:{label}").shuffle(ids)
        n = len(ids)
        n_val = max(1, round(n * SPLIT_FRACTIONS[1])) if n >= 3 else 0
        n_test = max(1, round(n * SPLIT_FRACTIONS[2])) if n >= 3 else 0
        n_train = n - n_val - n_test
        for i, face_id in enumerate(ids):
            assignment[face_id] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return assignment


def training_data_collect(*, dataset: Dataset, seed: int = 0, check_files: bool = False) -> TrainingData:
    """The labelled, included faces of the dataset with their labels and splits. Faces without a
    split get a stratified seeded 70/15/15 one for this job only (the faces are not changed).
    Raises TrainingDataError for anything that makes training meaningless."""
    faces = list(
        Face.objects.filter(dataset=dataset, is_excluded=False, is_unsure=False, label__in=dataset.classes)
        .exclude(crop="")
        .select_related("image")
        .order_by("id")
    )
    per_class = Counter(f.label for f in faces)
    notes = []
    classes = [name for name in dataset.classes if per_class[name] > 0]
    empty = [name for name in dataset.classes if per_class[name] == 0]
    if len(classes) < 2:
        raise TrainingDataError(
            f"Training needs at least two classes with labelled faces; this dataset has "
            f"{len(classes)} ({', '.join(f'{c}: {per_class[c]}' for c in dataset.classes)}). Label more faces first."
        )
    if empty:
        notes.append(f"Classes without any labelled face are left out of the model: {', '.join(empty)}.")
    small = [name for name in classes if per_class[name] < dataset.min_faces_per_class]
    if small:
        raise TrainingDataError(
            "Every class needs at least "
            f"{dataset.min_faces_per_class} labelled faces (the dataset's minimum); "
            + ", ".join(f"{name} has {per_class[name]}" for name in small)
            + "."
        )

    unassigned: dict[str, list[int]] = defaultdict(list)
    for f in faces:
        if f.split not in SPLITS:
            unassigned[f.label].append(f.pk)
    chosen = stratified_split(unassigned, seed) if unassigned else {}
    if chosen:
        notes.append(
            f"{len(chosen)} faces had no split; this job assigned a stratified 70/15/15 split (seed {seed}) "
            "for its own use, recorded in the version's snapshot."
        )
    examples = [
        Example(
            face_id=f.pk,
            crop=f.crop,
            label=f.label,
            split=f.split if f.split in SPLITS else chosen[f.pk],
            split_assigned=f.split not in SPLITS,
            metadata=face_slices(f),
        )
        for f in faces
    ]
    data = TrainingData(classes=classes, examples=examples, notes=notes)
    for split in SPLITS:
        if not data.of_split(split):
            raise TrainingDataError(
                f"The {split} split has no faces. Assign some faces to it (or clear the splits so "
                "the job assigns a stratified one)."
            )
    if check_files:
        missing = missing_crops(data.examples)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise TrainingDataError(
                f"{len(missing)} crop files are missing from storage ({shown}). Re-align those images first."
            )
    return data


def missing_crops(examples: list[Example]) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        exists = list(pool.map(default_storage.exists, [e.crop for e in examples]))
    return [e.crop for e, ok in zip(examples, exists, strict=True) if not ok]


# Words of the error of a file that vanished while a job streamed it. TensorFlow wraps what the
# pipeline's reader raises in an error of its own, traceback included; the job's error is found
# in it by these words (streamed_file_gone) and shown plainly.
FILE_GONE = "is no longer in storage"


def read_storage_file(path: str) -> bytes:
    """One file's bytes from the default storage (any backend): what the training pipeline's
    streams read each crop or chip with (training.engine.file_dataset)."""
    try:
        with default_storage.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"The file {path} {FILE_GONE}: its face was deleted or aligned again while the job ran. "
            "Start the job again."
        ) from exc


def streamed_file_gone(error: BaseException) -> str | None:
    """read_storage_file's message about a vanished file, out of the error TensorFlow wrapped it
    in; None when the error is about something else."""
    found = re.search(rf"The file \S+ {FILE_GONE}[^\n]*?Start the job again\.", str(error))
    return found.group(0) if found else None


def read_crop_bytes(paths: list[str]) -> list[bytes]:
    """Crop files' bytes, read in parallel threads (storage may be remote)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(read_storage_file, paths))


def snapshot_write(*, data: TrainingData, path: str) -> str:
    """Freeze exactly which faces, labels and splits a version saw, as CSV in storage."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["face_id", "crop", "label", "split", "split_assigned_by_job", "slices"])
    for e in data.examples:
        slices = ";".join(f"{k}={v}" for k, v in sorted(e.metadata.items()))
        # People download it (the version page): no cell may run as a formula in a spreadsheet.
        writer.writerow(csv_row([e.face_id, e.crop, e.label, e.split, int(e.split_assigned), slices]))
    return default_storage.save(path, ContentFile(buffer.getvalue().encode()))


def snapshot_read(path: str) -> list[dict]:
    with default_storage.open(path, "rb") as handle:
        text = handle.read().decode()
    rows = [{k: csv_cell_read(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
    for row in rows:
        row["face_id"] = int(row["face_id"])
    return rows
