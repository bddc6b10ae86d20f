"""Fold per-run result files of cpu_step_attempts into the ledger, benchmarks/results/
cpu_step_ledger.{md,json}: every run's rows, its command, date, machine and notes kept.

    python -m benchmarks.speed.fold_cpu_step [--results benchmarks/results] [--dry-run]

Reads each cpu_step_<run>.json (the rows as measured, the command, date and machine) beside its
.md, and refuses unless the tables rebuilt from the JSON rows are the .md's tables line for line
and its command and machine lines are the JSON's: nothing is re-measured or retyped. Whatever
the .md holds after its Machine line (notes added after the run) goes into the ledger, links to
other folded files made links into the ledger. Runs already in the ledger are kept once. It does
not delete the folded files: `git rm` them. It made the ledger on 2026-12-03 from the 12 files
cpu_step_attempts wrote until then (they are in the history of the commit that removed them).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from types import SimpleNamespace

from benchmarks.common import RESULTS
from benchmarks.speed.cpu_step_attempts import WHAT, report
from benchmarks.speed.cpu_step_ledger import LEDGER, append_runs, run_record

ABOUT = ["The first 12 runs were folded on 2026-12-03, by `python -m benchmarks.speed."
         "fold_cpu_step`, from the result files each run had written (benchmarks/results/"
         "cpu_step_<run>.{md,json}, removed in that commit): their JSON rows, checked to give "
         "back each file's tables line for line. The measurements are unchanged; the commands "
         "were rewritten to the package paths (`python -m benchmarks.speed.cpu_step_attempts`) "
         "and the notes' links point into this ledger.", ""]


def folded_run(json_path: str) -> dict:
    """One per-run result file pair as a ledger run; SystemExit where the .md is not what the
    JSON's rows give."""
    stem = os.path.splitext(json_path)[0]
    name = os.path.basename(stem)
    with open(json_path) as f:
        data = json.load(f)
    with open(stem + ".md") as f:
        text = f.read()
    tables = "\n".join(report(SimpleNamespace(**data["args"]), data["rows"]))
    head = (f"{tables}\n\nCommand: `{data['command']}`  \n"
            f"Machine: {data['machine']}, {data['date']}\n")
    if not text.startswith(head):
        sys.exit(f"error: {stem}.md is not the tables, command and machine of its JSON; "
                 "fold it by hand")
    notes = re.sub(r"\[(cpu_step_\w+)\.md\]\(\1\.md\)", r"[\1](#\1)", text[len(head):].strip())
    notes = re.sub(r"\]\((cpu_step_(?!ledger)\w+)\.md\)", r"](#\1)", notes)
    return run_record(name, data["args"], data["rows"], data["command"], data["date"],
                      data["machine"], notes, what=WHAT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=RESULTS, help="the results folder")
    parser.add_argument("--dry-run", action="store_true", help="check the files, write nothing")
    args = parser.parse_args(argv)
    paths = sorted(p for p in glob.glob(os.path.join(args.results, "cpu_step_*.json"))
                   if not os.path.basename(p).startswith(LEDGER))
    if not paths:
        print(f"nothing to fold in {args.results}")
        return 0
    runs = [folded_run(p) for p in paths]
    print(f"{len(runs)} runs, {sum(len(r['rows']) for r in runs)} measured rows (torch peers "
          "included):", " ".join(r["name"] for r in runs))
    if not args.dry_run:
        print("->", append_runs(args.results, runs, about=ABOUT))
        print("now remove the folded files:", "git rm", " ".join(
            os.path.relpath(s + e, os.getcwd()) for p in paths
            for s in [os.path.splitext(p)[0]] for e in (".md", ".json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
