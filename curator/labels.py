"""Where an imported photo's label comes from: a labels.csv beside the images, a UTKFace file
name, or a folder named after a class. Pure functions of names and text, so every layout is
easy to test."""

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

# age_gender_race_datetime.jpg[.chip.jpg]; a few UTKFace files lack the race field.
UTKFACE_NAME = re.compile(r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?:(?P<race>[0-4])_)?(?P<stamp>\d{8,})")
UTKFACE_GENDERS = {"0": "male", "1": "female"}
UTKFACE_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}
# Other spellings people use for the default classes.
SYNONYMS = {
    "female": {"female", "f", "woman", "women", "girl", "girls", "females"},
    "male": {"male", "m", "man", "men", "boy", "boys", "males"},
}
CSV_NAMES = {"labels.csv"}
CSV_PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "name")
CSV_LABEL_COLUMNS = ("label", "class", "gender", "sex", "category")


def class_for(value: str, classes: list[str]) -> str | None:
    """The dataset class a label value names (case-insensitive, with common synonyms)."""
    wanted = value.strip().lower()
    if not wanted:
        return None
    for name in classes:
        if wanted == name.lower() or wanted in SYNONYMS.get(name.lower(), ()):
            return name
    return None


def parse_utkface(name: str) -> dict | None:
    match = UTKFACE_NAME.match(PurePosixPath(name).name)
    if not match:
        return None
    meta = {"age": int(match["age"]), "source": "UTKFace"}
    if match["race"] is not None:
        meta["race"] = UTKFACE_RACES[match["race"]]
    return {"label": UTKFACE_GENDERS[match["gender"]], "metadata": meta}


def label_from_folders(name: str, classes: list[str]) -> str | None:
    """The nearest enclosing folder that names a class: `train/female/x.jpg` -> female."""
    for folder in reversed(PurePosixPath(name).parts[:-1]):
        found = class_for(folder, classes)
        if found:
            return found
    return None


def _convert(value: str) -> str | int | float:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


@dataclass
class CsvLabels:
    """Rows of a labels.csv, keyed by the path they name relative to the csv's folder."""

    folder: PurePosixPath
    rows: dict[str, dict] = field(default_factory=dict)
    by_basename: dict[str, list[dict]] = field(default_factory=dict)
    error: str = ""

    @classmethod
    def parse(cls, csv_name: str, data: bytes) -> "CsvLabels":
        labels = cls(folder=PurePosixPath(csv_name).parent)
        text = data.decode("utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(text))
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        path_col = next((columns[c] for c in CSV_PATH_COLUMNS if c in columns), None)
        label_col = next((columns[c] for c in CSV_LABEL_COLUMNS if c in columns), None)
        if path_col is None or label_col is None:
            labels.error = (
                f"{csv_name}: needs a path column ({', '.join(CSV_PATH_COLUMNS)}) and a label column "
                f"({', '.join(CSV_LABEL_COLUMNS)}); found {', '.join(reader.fieldnames or []) or 'no header'}"
            )
            return labels
        for row in reader:
            path = (row.get(path_col) or "").strip().replace("\\", "/").lstrip("./")
            if not path:
                continue
            metadata = {
                key.strip(): _convert(value.strip())
                for key, value in row.items()
                if key not in (path_col, label_col) and key and value is not None and value.strip()
            }
            entry = {"label": (row.get(label_col) or "").strip(), "metadata": metadata}
            labels.rows[path] = entry
            labels.by_basename.setdefault(PurePosixPath(path).name, []).append(entry)
        return labels

    def lookup(self, name: str) -> dict | None:
        path = PurePosixPath(name)
        try:
            relative = str(path.relative_to(self.folder)) if str(self.folder) != "." else str(path)
        except ValueError:
            relative = None
        if relative is not None and relative in self.rows:
            return self.rows[relative]
        same_name = self.by_basename.get(path.name, [])
        return same_name[0] if len(same_name) == 1 else None


@dataclass
class LabelGuess:
    label: str  # a dataset class, or "" when none
    layout: str  # "csv", "utkface", "folders" or "none"
    metadata: dict
    unknown_value: str = ""  # a label that was given but is not one of the classes


class LabelFinder:
    """Finds each file's label, preferring labels.csv, then UTKFace names, then folders."""

    def __init__(self, classes: list[str], csv_files: Iterable[CsvLabels] = ()):
        self.classes = classes
        self.csv_files = list(csv_files)

    def find(self, name: str) -> LabelGuess:
        for labels in self.csv_files:
            row = labels.lookup(name)
            if row is not None:
                return self._guess(row["label"], "csv", row["metadata"])
        utk = parse_utkface(name)
        if utk is not None:
            return self._guess(utk["label"], "utkface", utk["metadata"])
        folder_label = label_from_folders(name, self.classes)
        if folder_label:
            return LabelGuess(folder_label, "folders", {})
        return LabelGuess("", "none", {})

    def _guess(self, value: str, layout: str, metadata: dict) -> LabelGuess:
        found = class_for(value, self.classes)
        if found is None and value:
            return LabelGuess("", layout, metadata, unknown_value=value)
        return LabelGuess(found or "", layout, metadata)
