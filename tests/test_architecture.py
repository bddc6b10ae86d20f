"""The one-way flow of docs/architecture.md, enforced: a module imports only from its own
layer or layers to its left, imports inside functions included; what evaluation, ensembles
and serving may not reach is checked through every chain of imports (transitively); no
module outside the run layer names a run-directory file, and no code branches on a task's
name outside the task table."""

from __future__ import annotations

import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "multimodal"

# left to right; a module may import its own layer and any layer to its left
LAYERS = [
    {"errors", "config", "config_sources", "metrics", "outputs", "tasks"},  # the base: no other part
    {"data"},
    {"models"},
    {"run"},  # the run directory: one writer, one reader; weights, predictions, mesh, cache
    {"training"},
    {"ensemble", "search"},  # search: hyperparameter studies over training (Optuna)
    {"evaluation"},
    {"serving"},  # prediction CLI, exported models, the web demo: over runs and ensembles
]
# beyond the layer order: what these may not reach at all, through any chain of imports
FORBIDDEN = {"ensemble": {"training"}, "evaluation": {"training"}, "serving": {"training"}}


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


# inside the data layer, the steps in the same one-way order: a part of multimodal/data imports
# only its own part or parts to its left (sources never reach splits, records or loaders)
DATA_LAYERS = [
    {"table", "images", "sample"},  # the table every source produces; operations on pictures
    {"sources"},
    {"split"},
    {"records"},
    {"pipeline", "explore"},
]


def _data_layer(part: str) -> int:
    for i, names in enumerate(DATA_LAYERS):
        if part in names:
            return i
    raise AssertionError(f"multimodal.data.{part} is in no layer of DATA_LAYERS: add it")


def data_violations(package: pathlib.Path = None) -> list[str]:
    data = (package or PACKAGE) / "data"
    found = []
    for path in sorted(data.rglob("*.py")):
        rel = path.relative_to(data)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for line, names in _imports(path):
            for name in names:
                parts = name.split(".")
                if parts[1] != "data" or len(parts) < 3 or parts[2] == own:
                    continue
                if _data_layer(parts[2]) > _data_layer(own):
                    found.append(f"data/{rel.as_posix()}:{line} imports multimodal.data.{parts[2]} "
                                 "(to its right)")
    return sorted(set(found))


def test_data_steps_import_only_to_their_left(tmp_path):
    assert data_violations() == []
    fake = tmp_path / "multimodal" / "data" / "sources"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from multimodal.data.pipeline import loaders\n")
    assert data_violations(tmp_path / "multimodal") == [
        "data/sources/bad.py:2 imports multimodal.data.pipeline (to its right)"]


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


def _module_of(dotted: str, package: pathlib.Path) -> str | None:
    """`multimodal.a.b.c` -> the longest prefix that is a module file or package of ours."""
    parts = dotted.split(".")[1:]
    for n in range(len(parts), 0, -1):
        rel = pathlib.Path(*parts[:n])
        if (package / f"{rel}.py").exists():
            return ".".join(parts[:n])
        if (package / rel / "__init__.py").exists():
            return ".".join(parts[:n]) + ".__init__"
    return None


def import_graph(package: pathlib.Path) -> dict[str, set[str]]:
    """module (dotted, relative to the package) -> the modules of ours it imports, at the
    top or inside functions; importing `a.b` also runs `a/__init__`."""
    graph = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        name = ".".join(rel.parts)
        targets = set()
        for _, names in _imports(path):
            for dotted in names:
                module = _module_of(dotted, package)
                if module is None:
                    continue
                targets.add(module)
                parts = module.removesuffix(".__init__").split(".")
                targets.update(".".join(parts[:i]) + ".__init__" for i in range(1, len(parts)))
        graph[name] = targets - {name}
    return graph


def transitive_violations(package: pathlib.Path = None) -> list[str]:
    package = package or PACKAGE
    graph = import_graph(package)
    found = []
    for start in graph:
        own = start.split(".")[0]
        banned = FORBIDDEN.get(own)
        if not banned:
            continue
        seen, stack, parent = {start}, [start], {}
        while stack:
            node = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt in seen:
                    continue
                seen.add(nxt)
                parent[nxt] = node
                if nxt.split(".")[0] in banned:
                    chain = [nxt]
                    while chain[-1] != start:
                        chain.append(parent[chain[-1]])
                    found.append(" -> ".join(reversed(chain)))
                    continue
                stack.append(nxt)
    return sorted(found)


def test_evaluation_ensembles_and_serving_never_reach_training_through_any_chain():
    assert transitive_violations() == []


def test_the_transitive_check_sees_an_indirect_import(tmp_path):
    """evaluation -> run -> training is caught although each step points left."""
    fake = tmp_path / "multimodal"
    for part in ("evaluation", "run", "training"):
        (fake / part).mkdir(parents=True)
        (fake / part / "__init__.py").write_text("")
    (fake / "evaluation" / "report.py").write_text("from multimodal.run.load import x\n")
    (fake / "run" / "load.py").write_text("def f():\n    from multimodal.training import step\n")
    (fake / "training" / "step.py").write_text("")
    assert transitive_violations(fake) == [
        "evaluation.report -> run.load -> training.__init__",
        "evaluation.report -> run.load -> training.step"]


RUN_FILE_NAMES = ("config.yaml", "classes.json", "normalizer.json", "metadata_encoder.json",
                  "summary.json", "run.json", "metrics.jsonl", "oof_predictions.csv",
                  "curves.png", "split.csv", "prepared_data.json")
# exported models are their own format (serving/export.py) and share a few file names
NAMES_ALLOWED = {"run", "serving/export.py", "serving/model.py", "data/split/grouped.py",
                 "data/records/store.py"}


def test_only_the_run_layer_names_run_directory_files():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.split("/")[0] in NAMES_ALLOWED or rel in NAMES_ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RUN_FILE_NAMES:
                found.append(f"{rel}:{node.lineno} names {node.value!r}")
    assert found == []


def test_no_code_branches_on_a_task_name_outside_the_task_tables():
    """`task == "segmentation"` and the like: a new task would need a new branch there."""
    import re

    pattern = re.compile(r"task\s*[!=]=\s*[\"']|[\"'](classification|segmentation)[\"']\s*[!=]=")
    found = [f"{p.relative_to(PACKAGE)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_every_package_has_an_init():
    for folder in PACKAGE.iterdir():
        if folder.is_dir() and not folder.name.startswith(("_", ".")):
            assert (folder / "__init__.py").exists(), f"{folder.name} has no __init__.py"
