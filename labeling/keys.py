"""Keyboard keys of a dataset's classes: `Dataset.class_keys` when set, otherwise the first
letter of each class when those are distinct and free (`f`/`m`), otherwise digits `1`-`9`."""

from curator.models import Dataset

# Keys the grid uses for something else: unsure, exclude, undo, select, select page.
RESERVED = {"u", "x", "z", " ", "a"}


def default_keys(classes: list[str]) -> dict[str, str]:
    firsts = [c[:1].lower() for c in classes]
    if all(firsts) and len(set(firsts)) == len(firsts) and not RESERVED & set(firsts):
        return dict(zip(classes, firsts, strict=True))
    return {c: str(i + 1) for i, c in enumerate(classes[:9])}


def keys_validate(classes: list[str], keys: dict) -> list[str]:
    """Problems with a configured key map (empty list when it is usable)."""
    problems = []
    if not isinstance(keys, dict):
        return ["class_keys must map class names to single keys."]
    for name, key in keys.items():
        if name not in classes:
            problems.append(f"“{name}” is not a class of this dataset.")
        if not isinstance(key, str) or len(key) != 1:
            problems.append(f"The key of “{name}” must be a single character.")
        elif key.lower() in RESERVED:
            problems.append(f"“{key}” is reserved (u unsure, x exclude, z undo, space select, a select page).")
    values = [str(k).lower() for k in keys.values()]
    if len(set(values)) != len(values):
        problems.append("Two classes share a key.")
    return problems


def class_keys_for(dataset: Dataset) -> dict[str, str]:
    configured = dataset.class_keys or {}
    if configured and not keys_validate(dataset.classes, configured):
        keys = {c: configured[c].lower() for c in dataset.classes if c in configured}
        if len(keys) == len(dataset.classes):
            return keys
    return default_keys(list(dataset.classes))
