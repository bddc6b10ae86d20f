"""benchmarks/README.md indexes every result file with its command, and is current."""

import os
import sys

from scripts_helper import ROOT


def test_the_benchmark_index_is_current_and_lists_every_result():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from index import RESULTS, index_markdown

    text = index_markdown()
    with open(os.path.join(ROOT, "benchmarks", "README.md")) as f:
        assert f.read() == text, "run: python benchmarks/index.py"
    stems = {os.path.splitext(f)[0] for f in os.listdir(RESULTS) if f.endswith((".md", ".json"))}
    assert all(f"| [{s}](" in text or f"| {s} |" in text for s in stems)
