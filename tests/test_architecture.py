"""The apps are layered: curator (the dataset core) at the bottom, embeddings (face descriptors)
above it, labeling above that, training above labeling, review above both. No app imports a
higher one; a lower app that needs something from a higher one offers a hook (labeling's
`labels_changed` signal and prediction provider, curator's `faces_aligned` signal and
DatasetAdmin actions) that the higher app fills in its AppConfig.ready().

This walks every import statement (also the ones inside functions, and the migrations) with `ast`,
so it needs no Django set-up and names the file and line of each offending import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each app and the apps it must never import.
FORBIDDEN = {
    "curator": {"embeddings", "labeling", "training", "review"},
    "embeddings": {"labeling", "training", "review"},
    "labeling": {"training", "review"},
    "training": {"review"},
    "review": set(),
}


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; relative imports are resolved
    against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from curator import training`-style imports name the module in the alias.
            found += [(node.lineno, ".".join(filter(None, [module, alias.name]))) for alias in node.names]
    return found


def violations(app: str, root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted((root / app).rglob("*.py")):
        for line, module in imported_modules(path, root):
            top = module.split(".")[0]
            if top in FORBIDDEN[app]:
                out.append(f"{path.relative_to(root)}:{line} imports {module} ({app} -> {top})")
    return sorted(set(out))


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_no_app_imports_a_higher_one(app):
    assert (ROOT / app).is_dir()
    found = violations(app)
    assert not found, f"{app} must not import {', '.join(sorted(FORBIDDEN[app]))}:\n" + "\n".join(found)


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The checker itself: nested, `import x.y` and relative imports are all seen."""
    app = tmp_path / "labeling"
    app.mkdir()
    (app / "bad.py").write_text(
        "import os\n\n\ndef f():\n    from training.models import Prediction\n    import review.selectors\n"
    )
    (app / "rel.py").write_text("from .. import training\nfrom . import selectors\n")
    assert violations("labeling", root=tmp_path) == [
        "labeling/bad.py:5 imports training.models (labeling -> training)",
        "labeling/bad.py:5 imports training.models.Prediction (labeling -> training)",
        "labeling/bad.py:6 imports review.selectors (labeling -> review)",
        "labeling/rel.py:1 imports training (labeling -> training)",
    ]
