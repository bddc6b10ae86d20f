"""Errors a user can cause and fix, and the one way scripts report them.

Every such error derives from `UserError`: a bad config, an unusable data file or row,
a leaking split, a prepared folder made from other inputs, a damaged or missing run.
Scripts wrapped in `cli` print it as one line (`error: what (where). hint`) and exit 2;
anything else is a bug and keeps its traceback. This module imports nothing of the
package, so every layer may raise these.
"""

from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Something the user can fix. `hint` is a working command or setting that fixes it."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem, self.hint = problem, hint
        super().__init__(problem + (f". {hint}" if hint else ""))

    def one_line(self) -> str:
        return " ".join(str(self).split())


class ConfigError(UserError, ValueError):
    """A config file, override or command-line option is invalid."""


class DataError(UserError, ValueError):
    """A dataset file or row is unusable; names the file and the row (line number,
    header = line 1)."""

    def __init__(self, problem: str, file: str | None = None, line: int | None = None,
                 hint: str | None = None):
        where = ", ".join([str(file)] * (file is not None) + [f"line {line}"] * (line is not None))
        self.file, self.line = file, line
        super().__init__(f"{where}: {problem}" if where else problem, hint)
        self.problem = problem


class LeakageError(UserError, RuntimeError):
    """Train and evaluation splits share a group or an identical image."""


class PreparedMismatch(UserError, RuntimeError):
    """A prepared-data folder holds a dataset made from other inputs."""


class RunError(UserError, RuntimeError):
    """A run or ensemble directory is missing, incomplete or damaged."""


def cli(main):
    """Wrap a script's `main(argv) -> int`: a `UserError` becomes one line on stderr and
    exit code 2, Ctrl-C exit code 130; other exceptions (bugs) keep their traceback."""

    @functools.wraps(main)
    def wrapped(argv=None) -> int:
        try:
            return main(argv)
        except UserError as exc:
            print(f"error: {exc.one_line()}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return wrapped
