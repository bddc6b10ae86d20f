"""benchmarks/README.md indexes every result file with its command, and is current; the
benchmarks are a package (no sys.path edits) and every command the index quotes names one of
its modules."""

import importlib.util
import os
import re

from benchmarks_helper import import_benchmark
from scripts_helper import ROOT

BENCHMARKS = os.path.join(ROOT, "benchmarks")


def test_the_benchmark_index_is_current_and_lists_every_result():
    index = import_benchmark("index")

    text = index.index_markdown()
    with open(os.path.join(BENCHMARKS, "README.md")) as f:
        assert f.read() == text, "run: python -m benchmarks.index"
    stems = {os.path.splitext(f)[0] for f in os.listdir(index.RESULTS)
             if f.endswith((".md", ".json"))}
    assert all(f"| [{s}](" in text or f"| {s} |" in text for s in stems)
    # the CPU step's attempts are one ledger, not a file per run
    assert "cpu_step_ledger" in stems and not any(
        s.startswith("cpu_step_") and s != "cpu_step_ledger" for s in stems)


def test_no_benchmark_edits_sys_path():
    edit = re.compile(r"sys\.path\s*(\.\s*(insert|append|extend)\b|\+?=|\[)")
    offenders = []
    for folder, _, files in os.walk(BENCHMARKS):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    offenders += [f"{os.path.relpath(path, ROOT)}:{i}"
                                  for i, line in enumerate(f, 1) if edit.search(line)]
    assert offenders == [], "import through the package instead: " + ", ".join(offenders)
    packages = [os.path.relpath(folder, ROOT) for folder, _, files in os.walk(BENCHMARKS)
                if any(f.endswith(".py") for f in files) and "__init__.py" not in files]
    assert packages == [], f"folders of modules without __init__.py: {packages}"


def test_every_command_in_the_index_names_a_benchmark_module():
    import_benchmark("index")  # the package importable, as `python -m` from the root has it
    with open(os.path.join(BENCHMARKS, "README.md")) as f:
        text = f.read()
    rows = [line for line in text.splitlines() if line.startswith("| [") or
            re.match(r"\| \w+ \|", line) and not line.startswith("| result |")]
    commands = [c for line in rows for c in re.findall(r"`(python [^`]*)`", line)]
    assert len(rows) > 30 and len(commands) > 30
    modules = set()
    for command in commands:
        found = re.match(r"python -m (benchmarks(\.\w+)+)(\s|$)", command)
        assert found, f"not a `python -m benchmarks...` command: {command}"
        modules.add(found.group(1))
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin.startswith(BENCHMARKS), module
        with open(spec.origin) as f:
            assert 'if __name__ == "__main__":' in f.read(), f"{module} does not run as a script"
