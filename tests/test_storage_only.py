"""Media goes through Django's storage API only, so any backend (a local folder, S3) works on any
host. This walks every app module with `ast` and fails on what would tie a file to one machine's
disk: the builtin `open()` (except the few reviewed places below, which never touch media),
`MEDIA_ROOT` outside settings, a storage's `.path()` (object stores have none), or a
FileSystemStorage built by hand."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ["curator", "embeddings", "labeling", "training", "review"]

# (file, enclosing function): why a local file is right there.
ALLOWED_OPEN = {
    # Imports from the server (a zip or folder the operator names, CURATOR_IMPORT_ROOTS) read
    # that file, not media.
    ("curator/services/imports.py", "import_zip_file"),
    # Tests, benches and the command line decode local files; app code passes storage handles.
    ("curator/images.py", "_open"),
    # Keras writes a model to a temporary file, which is then copied into storage.
    ("training/services.py", "model_version_register"),
}


def _functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node -> the name of the function it is in ("" at module level)."""
    owner: dict[ast.AST, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else name
            owner[child] = inner
            visit(child, inner)

    visit(tree, "")
    return owner


def _receiver(node: ast.AST) -> str:
    return ast.unparse(node).lower()


def offences(path: Path) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    owner = _functions(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "open" and (relative, owner.get(node, "")) not in ALLOWED_OPEN:
                found.append(f"{where} open() of a local file")
            if node.func.id == "FileSystemStorage":
                found.append(f"{where} builds a FileSystemStorage")
        is_call_of_attribute = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        if is_call_of_attribute and node.func.attr == "path" and "storage" in _receiver(node.func.value):
            found.append(f"{where} storage.path(): object stores have no local path")
        names = (getattr(node, "attr", None), getattr(node, "id", None))
        if "MEDIA_ROOT" in names and relative != "curator/settings.py":
            found.append(f"{where} MEDIA_ROOT: use default_storage")
    return found


def test_media_is_reached_only_through_the_storage_api():
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                found += offences(path)
    assert found == [], "\n".join(found)


def test_the_rule_catches_each_kind_of_offence(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.test_storage_only.ROOT", tmp_path)
    module = tmp_path / "curator" / "bad.py"
    module.parent.mkdir()
    module.write_text(
        "from django.conf import settings\n"
        "def f(name):\n"
        "    open(settings.MEDIA_ROOT / name)\n"
        "    default_storage.path(name)\n"
        "    FileSystemStorage()\n"
    )
    kinds = sorted(line.split(" ", 1)[1] for line in offences(module))
    assert kinds == [
        "MEDIA_ROOT: use default_storage",
        "builds a FileSystemStorage",
        "open() of a local file",
        "storage.path(): object stores have no local path",
    ]
