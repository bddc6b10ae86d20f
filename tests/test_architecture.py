"""The one-way flow of docs/architecture.md, enforced: a module imports only from its own
layer or layers to its left, imports inside functions included."""

from __future__ import annotations

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "multimodal"

# left to right; a module may import its own layer and any layer to its left
LAYERS = [
    {"errors", "config", "metrics", "outputs"},  # the base: no other part of the package
    {"data"},
    {"models"},
    {"training"},
    {"runs"},  # a saved run directory: loading, inputs, predictions, its feature cache
    {"ensemble", "search"},  # search: hyperparameter studies over training (Optuna)
    {"evaluation"},
    {"serving"},  # prediction CLI, exported models, the web demo: over runs and ensembles
]
# beyond the layer order: what evaluation and ensembles may not reach at all
FORBIDDEN = {"ensemble": {"training"}, "evaluation": {"training"}}


def _layer(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"multimodal.{part} is in no layer of LAYERS: add it")


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            yield node.lineno, [n for n in names if n.startswith("multimodal.")]
        elif isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names if a.name.startswith("multimodal.")]


def _top(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else None


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "__init__.py":
            continue
        own = rel.parts[0].removesuffix(".py")
        for line, names in _imports(path):
            for name in names:
                top = _top(name)
                if top is None or top == own or not (PACKAGE / top).exists() and not \
                        (PACKAGE / f"{top}.py").exists():
                    continue  # same package, or `from multimodal.data import x` resolved above
                if _layer(top) > _layer(own):
                    found.append(f"{rel}:{line} imports multimodal.{top} (to its right)")
                if top in FORBIDDEN.get(own, ()):
                    found.append(f"{rel}:{line} imports multimodal.{top} (forbidden for {own})")
    return sorted(set(found))


def test_no_package_imports_one_to_its_right():
    assert violations() == []


def test_the_check_sees_a_backward_import(tmp_path, monkeypatch):
    """The checker itself can fail: a models module importing the trainer is caught."""
    fake = tmp_path / "multimodal"
    for part in ("models", "training"):
        (fake / part).mkdir(parents=True)
    (fake / "models" / "bad.py").write_text(
        "def f():\n    from multimodal.training.trainer import train\n")
    (fake / "training" / "trainer.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert violations() == ["models/bad.py:2 imports multimodal.training (to its right)"]


def test_every_package_has_an_init():
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            assert (folder / "__init__.py").exists(), f"{folder.name} has no __init__.py"
