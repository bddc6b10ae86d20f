"""Tests call the scripts' `main` in their own process (scripts_helper.run_script). What only
`python scripts/x.py` does is checked here, in one fresh interpreter: each script as
`__main__`, with its own folder first on sys.path, answers --help and exits 0."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

from scripts_helper import ROOT

RUN_EACH = textwrap.dedent("""
    import glob, os, runpy, sys
    for path in sorted(glob.glob(os.path.join("scripts", "*.py"))):
        sys.argv = [path, "--help"]
        sys.path[0] = os.path.dirname(os.path.abspath(path))
        try:
            runpy.run_path(path, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                sys.exit(f"{path} --help: exit {exc.code}")
        else:
            sys.exit(f"{path} --help: returned without exiting")
        print("ran", path, file=sys.stderr)
""")


def test_every_script_runs_as_a_program():
    out = subprocess.run([sys.executable, "-c", RUN_EACH], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    scripts = glob.glob(os.path.join(ROOT, "scripts", "*.py"))
    assert out.stderr.count("ran scripts") == len(scripts) > 10, out.stderr[-3000:]
