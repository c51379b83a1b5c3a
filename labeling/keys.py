"""The key registry: one meaning per key on every page, and each page's list of the keys that
work there (the `?` overlay shows exactly that list; the pages' scripts read their bindings from
the same JSON, so a key cannot mean one thing in the hint and do another).

Class keys: `Dataset.class_keys` when set, otherwise the first letter of each class when those
are distinct and free (`f`/`m`), otherwise digits `1`-`9`."""

from __future__ import annotations

from dataclasses import dataclass

from curator.models import Dataset


@dataclass(frozen=True)
class Key:
    action: str  # what the page's script binds (`accept`, `exclude`, ...)
    key: str  # KeyboardEvent.key as typed: "a", "A" (shift+a), " ", "Escape", "+"
    label: str  # how the overlay writes the key
    text: str  # what it does, the same everywhere


# Every key with a meaning. A key is in this table once; pages choose which of them they offer.
KEYS: dict[str, Key] = {
    k.action: k
    for k in (
        Key("accept", "a", "a", "accept the model's suggestion as the label"),
        Key("confirm", "c", "c", "confirm the current label (the model is wrong)"),
        Key("unsure", "u", "u", "mark unsure (again: sure)"),
        Key("exclude", "x", "x", "exclude (again: include)"),
        Key("not_face", "n", "n", "not a face: exclude it as a false detection"),
        Key("undo", "z", "z", "undo my last change"),
        Key("photo", "p", "p", "full-screen photo of the focused face (Esc closes)"),
        Key("similar", "s", "s", "more like this: the faces nearest to the focused one"),
        Key("select", " ", "space", "select / unselect the focused face"),
        Key("select_page", "A", "shift+a", "select every face on the page"),
        Key("clear", "Escape", "Esc", "clear the selection, close an overlay"),
        Key("bigger", "+", "+", "bigger tiles"),
        Key("smaller", "-", "−", "smaller tiles"),
        Key("panels", "\\", "\\", "show / hide the filter and bulk panels"),
        Key("move", "Arrow", "←↑→↓", "move the focus"),
        Key("previous_face", "ArrowLeft", "←", "the previous face of the filter"),
        Key("next_face", "ArrowRight", "→", "the next face of the filter"),
        Key("zoom_in", "+", "+", "zoom in on the face"),
        Key("zoom_out", "-", "−", "zoom out"),
        Key("next", "Enter", "Enter", "next page / next faces"),
        Key("help", "?", "?", "this key map"),
    )
}

# Letters a class may not use (any single-character key above).
RESERVED = {k.key.lower() for k in KEYS.values() if len(k.key) == 1}

# The keys each page offers, in the overlay's order. Class keys come first where a page has them.
PAGES: dict[str, list[str]] = {
    "grid": [
        "move",
        "unsure",
        "exclude",
        "not_face",
        "undo",
        "select",
        "select_page",
        "clear",
        "photo",
        "bigger",
        "smaller",
        "panels",
        "next",
        "similar",
    ],
    # The face page: the grid's keys for one face (issue 20: they did nothing there).
    "face": ["unsure", "exclude", "not_face", "undo", "previous_face", "next_face", "zoom_in", "zoom_out", "similar"],
    "disputes": ["move", "accept", "confirm", "exclude", "unsure", "undo", "next"],
    "suggestions": ["move", "accept", "exclude", "unsure", "undo", "next"],
    "active": ["move", "accept", "unsure", "exclude", "undo", "next"],
}


def page_keys(page: str, class_keys: dict[str, str] | None = None) -> dict:
    """What a page's `?` overlay lists and what its script binds: {"page", "bindings": {action:
    key}, "classes": {class: key}, "rows": [{"key", "text"}]}. Pages without keys of their own
    (`page=""`) list only `?` and Esc."""
    actions = PAGES.get(page, [])
    rows = [{"key": key, "text": f"label {cls}"} for cls, key in (class_keys or {}).items()]
    rows += [{"key": KEYS[a].label, "text": KEYS[a].text} for a in actions]
    for always in ("clear", "help"):
        if always not in actions:
            text = "close this key map" if always == "clear" else KEYS[always].text
            rows.append({"key": KEYS[always].label, "text": text})
    return {
        "page": page,
        "bindings": {a: KEYS[a].key for a in actions},
        "classes": dict(class_keys or {}),
        "rows": rows,
    }


def reserved_text() -> str:
    """The sentence the key settings show: which keys classes cannot have, and why."""
    return ", ".join(f"{k.label} {k.text.split(' (')[0].split(':')[0]}" for k in KEYS.values() if len(k.key) == 1)


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
            problems.append(f"“{key}” is reserved ({reserved_text()}).")
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
