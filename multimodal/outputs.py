"""The one rule for every folder a tool writes (`--out`, `--workdir` of an ensemble, ...).

A tool may write into a folder that is new, empty, or one it wrote before: it leaves a
marker file there naming itself and the entries it made. It never writes into a run, a
dataset or an input folder itself (the caller names those as `protected`), never into a
folder holding files it did not write, and never through a symbolic link. `--overwrite`
replaces only a folder the same tool wrote, and only when nothing foreign was added since.

One-shot outputs are built in a temporary sibling and renamed into place (`staged_output`):
a crash, Ctrl-C or a full disk leaves the old folder as it was and no half-written one.
Resumable jobs (cross-validation, stacking, search) claim their folder once
(`claim_output`) and write each file atomically (`write_atomic`), so finished parts
survive a crash. This module imports nothing of the package but its errors.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import tempfile

from multimodal.errors import UserError

MARKER = ".multimodal-output.json"


class OutputError(UserError, RuntimeError):
    """An output folder that must not be written, or could not be."""


def _owner(path: str) -> dict | None:
    try:
        with open(os.path.join(path, MARKER)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(path: str, tool: str, overwrite: bool = False, resume: bool = False,
                 protected: dict | None = None, legacy: tuple = (),
                 replace_with: str | None = "--overwrite") -> str:
    """Refuse `path` as `tool`'s output folder unless the rule allows it; its state.

    `protected`: {folder: what it is} that the output must not be (or, for a dataset,
    lie inside): runs, datasets, input folders. `legacy`: name patterns of everything the
    tool wrote before it left markers; a folder holding `legacy[0]` and only such entries
    is its own.
    Returns "new" (missing or empty), "owned" (this tool's folder, `overwrite` or `resume`
    given) — otherwise raises OutputError. `replace_with`: the option that replaces an earlier
    output, named in the refusal (None: the tool has none).
    """
    if os.path.islink(path.rstrip(os.sep)):
        raise OutputError(f"{path} is a symbolic link (to {os.path.realpath(path)}): outputs "
                          "are not written through links", "pass the real folder")
    for folder, what in (protected or {}).items():
        if folder and os.path.realpath(path) == os.path.realpath(folder):
            raise OutputError(f"{path} is the {what} itself: writing there would replace or "
                              "mix with its files", f"pass a new folder, e.g. {path.rstrip(os.sep)}"
                              f"_{tool.replace(' ', '_')}")
        if folder and what.startswith("dataset") and _inside(path, folder):
            raise OutputError(f"{path} lies inside the {what} {folder}: files written there "
                              "would be read as part of it", "pass a folder outside it")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{path} exists and is a file, not a folder", "pass a folder path")
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputError(f"{path} cannot be made: {probe} is a file", "pass another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path} cannot be written: no write permission in {probe}",
                          "pass a folder you can write")
    if not os.path.isdir(path) or not os.listdir(path):
        return "new"
    owner = _owner(path)
    entries = os.listdir(path)
    if owner is None and legacy and legacy[0] in entries and \
            all(any(fnmatch.fnmatch(e, p) for p in legacy) for e in entries):
        owner = {"tool": tool, "entries": entries}
    if owner is None or owner.get("tool") != tool:
        who = "files this tool did not write" if owner is None else \
            f"the output of {owner.get('tool', 'another tool')}"
        raise OutputError(f"{path} is not empty: it holds {who}", "pass a new or empty folder")
    foreign = sorted(set(entries) - set(owner.get("entries", [])) - {MARKER})
    if foreign and not resume:
        raise OutputError(f"{path} holds entries {tool} did not write: {foreign[:5]}",
                          "move them away or pass a new folder")
    if not (overwrite or resume):
        fix = f"pass {replace_with} to replace it, or a new folder" if replace_with else \
            "pass a new folder"
        raise OutputError(f"{path} already exists and already holds an earlier {tool} output",
                          fix)
    return "owned"


def _mark(path: str, tool: str, entries) -> None:
    write_atomic(os.path.join(path, MARKER),
                 json.dumps({"tool": tool, "entries": sorted(entries)}, indent=1))


def claim_output(path: str, tool: str, protected: dict | None = None,
                 legacy: tuple = ()) -> str:
    """Make (or reopen) a resumable job's folder; every later file goes in atomically.

    A job resumes in its own folder even when something was added there since; only the
    marker's entries are ever its to replace."""
    if check_output(path, tool, resume=True, protected=protected, legacy=legacy) == "new":
        _make_marked(path, tool)
    owner = _owner(path) or {}
    entries = owner.get("entries") or [e for e in os.listdir(path) if e != MARKER]
    _mark(path, tool, entries)
    return path


def _make_marked(path: str, tool: str) -> None:
    """A new folder appears with its marker already in it (a marked temporary sibling
    renamed into place), so workers claiming it at once (a shared search) never see it
    half-made, without the marker; the first rename wins and the others use its folder."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(path))}.new-",
                               dir=parent)
    try:
        _mark(staging, tool, [])
        os.rename(staging, path)  # replaces an empty folder; fails on a claimed one
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):  # e.g. an empty mount point
            os.makedirs(path, exist_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def record_entries(path: str, tool: str, names) -> None:
    """A resumable job names the entries it wrote, so the marker lists them as its own."""
    owner = _owner(path) or {}
    _mark(path, tool, set(owner.get("entries", [])) | set(names))


@contextlib.contextmanager
def staged_output(path: str, tool: str, overwrite: bool = False,
                  protected: dict | None = None, legacy: tuple = (),
                  replace_with: str | None = "--overwrite"):
    """Yield a temporary sibling folder to fill; on success it replaces `path` whole.

    The rule is checked again just before the swap (a folder filled meanwhile is refused,
    not replaced), and a failed swap puts the old folder back."""
    path = os.path.abspath(path)
    rule = dict(overwrite=overwrite, protected=protected, legacy=legacy,
                replace_with=replace_with)
    check_output(path, tool, **rule)
    parent, name = os.path.dirname(path), os.path.basename(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    try:
        with _disk_errors(path):
            yield staging
            _mark(staging, tool, os.listdir(staging))
            check_output(path, tool, **rule)
            old = None
            if os.path.isdir(path):
                old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
                os.rmdir(old)
                os.rename(path, old)
            try:
                os.rename(staging, path)
            except BaseException:
                if old:
                    os.rename(old, path)
                raise
            if old:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _disk_errors(path: str):
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"the disk is full writing {path}; nothing was replaced",
                              "free space and run the command again") from None
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutputError(f"cannot write {path} ({exc.strerror})",
                              "pass a folder you can write") from None
        raise


def write_atomic(path: str, data: str | bytes) -> None:
    """Write a file whole or not at all (a temporary sibling renamed over it)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with _disk_errors(path), os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def settings_changed(path: str, settings: dict) -> list[str]:
    """A resumable job's settings file: written on the first session (atomically); the keys
    a later session changes (empty: it may continue)."""
    if not os.path.exists(path):
        write_atomic(path, json.dumps(settings, indent=1))
        return []
    with open(path) as f:
        saved = json.load(f)
    return [k for k in {**saved, **settings} if saved.get(k) != settings.get(k)]
