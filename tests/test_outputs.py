"""The output-folder rule (multimodal.outputs): what a tool may write into, replacing only
its own output, and nothing half-written or lost on a crash, Ctrl-C or a full disk."""

import errno
import json
import os

import pytest

from multimodal.outputs import (MARKER, OutputError, check_output, claim_output,
                                record_entries, staged_output, write_atomic)


def _fill(folder, text="new"):
    with open(os.path.join(folder, "result.txt"), "w") as f:
        f.write(text)


def _written(path, tool="tool", text="old"):
    with staged_output(str(path), tool) as tmp:
        _fill(tmp, text)
    return path


def test_new_and_empty_folders_are_written_and_marked(tmp_path):
    out = _written(tmp_path / "a" / "b")
    assert (out / "result.txt").read_text() == "old"
    assert json.loads((out / MARKER).read_text()) == {"tool": "tool", "entries": ["result.txt"]}
    (tmp_path / "empty").mkdir()
    assert check_output(str(tmp_path / "empty"), "tool") == "new"


def test_a_users_folder_is_refused_even_with_overwrite(tmp_path):
    user = tmp_path / "thesis"
    (user / "photos").mkdir(parents=True)
    (user / "thesis.txt").write_text("two years of work")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="files this tool did not write"):
            with staged_output(str(user), "tool", overwrite=overwrite) as tmp:
                _fill(tmp)
    assert (user / "thesis.txt").read_text() == "two years of work"
    assert sorted(os.listdir(user)) == ["photos", "thesis.txt"]
    assert sorted(os.listdir(tmp_path)) == ["thesis"]  # no staging folder left


def test_own_output_is_replaced_only_with_overwrite_and_only_when_nothing_was_added(tmp_path):
    out = _written(tmp_path / "out")
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        check_output(str(out), "tool")
    with pytest.raises(OutputError, match="output of tool"):
        check_output(str(out), "another tool", overwrite=True)
    with staged_output(str(out), "tool", overwrite=True) as tmp:
        _fill(tmp, "second")
    assert (out / "result.txt").read_text() == "second"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        check_output(str(out), "tool", overwrite=True)


def test_the_run_the_dataset_and_links_are_refused(tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir(), data.mkdir()
    with pytest.raises(OutputError, match="is the run itself"):
        check_output(str(run), "tool", overwrite=True, protected={str(run): "run"})
    assert check_output(str(run / "eval"), "tool", protected={str(run): "run"}) == "new"
    with pytest.raises(OutputError, match="inside the dataset folder"):
        check_output(str(data / "copy"), "tool", protected={str(data): "dataset folder"})
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(str(tmp_path / "link"), "tool")


def test_unwritable_places_are_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output(str(tmp_path / "file"), "tool")
    with pytest.raises(OutputError, match="cannot be made"):
        check_output(str(tmp_path / "file" / "out"), "tool")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="no write permission"):
        check_output(str(tmp_path / "new"), "tool")


@pytest.mark.parametrize("crash", [RuntimeError("bug"), KeyboardInterrupt(),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_crash_mid_write_keeps_the_old_output_and_leaves_nothing_half_written(tmp_path, crash):
    out = _written(tmp_path / "out")
    expected = OutputError if isinstance(crash, OSError) else type(crash)
    with pytest.raises(expected) as info:
        with staged_output(str(out), "tool", overwrite=True) as tmp:
            _fill(tmp, "half")
            raise crash
    if isinstance(crash, OSError):
        assert "disk is full" in str(info.value) and "nothing was replaced" in str(info.value)
    assert (out / "result.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_folder_filled_while_the_tool_ran_is_refused_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="not empty"):
        with staged_output(str(out), "tool") as tmp:
            _fill(tmp)
            out.mkdir()
            (out / "thesis.txt").write_text("written meanwhile")
    assert (out / "thesis.txt").read_text() == "written meanwhile"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_failed_swap_puts_the_old_output_back(tmp_path, monkeypatch):
    out = _written(tmp_path / "out")
    real = os.rename

    def rename(src, dst):
        if ".partial-" in str(src):
            raise OSError(errno.EIO, "I/O error")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        with staged_output(str(out), "tool", overwrite=True) as tmp:
            _fill(tmp, "new")
    assert (out / "result.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_write_atomic_leaves_the_old_file_on_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    write_atomic(str(path), "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="disk is full"):
        write_atomic(str(path), "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.json"]


def test_resumable_jobs_reopen_their_own_folder_and_list_what_they_wrote(tmp_path):
    out = str(tmp_path / "cv")
    claim_output(out, "cv")
    os.makedirs(os.path.join(out, "fold_0"))
    record_entries(out, "cv", ["fold_0"])
    (tmp_path / "cv" / "user.txt").write_text("added later")
    claim_output(out, "cv")  # resumes despite the added file
    with pytest.raises(OutputError, match="output of cv"):
        claim_output(out, "search")
    with pytest.raises(OutputError, match="user.txt"):
        check_output(out, "cv", overwrite=True)


def test_an_output_written_before_markers_is_recognised_by_its_names(tmp_path):
    old = tmp_path / "eval"
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    (old / "curves.png").write_text("")
    legacy = ("metrics.json", "*.png")
    assert check_output(str(old), "evaluate", overwrite=True, legacy=legacy) == "owned"
    (old / "thesis.docx").write_text("")
    with pytest.raises(OutputError):
        check_output(str(old), "evaluate", overwrite=True, legacy=legacy)
    user = tmp_path / "pictures"
    user.mkdir()
    (user / "cat.png").write_text("")  # only matching names, but not an evaluation
    with pytest.raises(OutputError):
        check_output(str(user), "evaluate", overwrite=True, legacy=legacy)


# The scripts, as a user runs them (the data-loss cases of the output rule)

def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, files in os.walk(path) for f in files)


def test_export_never_deletes_the_run_or_a_users_folder(smoke_run, tmp_path):
    from scripts_helper import refused, run_script

    before = _tree(smoke_run)
    refused(run_script("export.py", "--checkpoint", smoke_run, "--out", smoke_run,
                       "--overwrite", check=False), "is the run being exported itself")
    assert _tree(smoke_run) == before
    user = tmp_path / "mine"
    (user / "photos").mkdir(parents=True)
    (user / "thesis.txt").write_text("years")
    refused(run_script("export.py", "--checkpoint", smoke_run, "--out", str(user),
                       "--overwrite", check=False), "files this tool did not write")
    assert (user / "thesis.txt").read_text() == "years" and (user / "photos").is_dir()
    (tmp_path / "file").write_text("x")
    refused(run_script("export.py", "--checkpoint", smoke_run, "--out",
                       str(tmp_path / "file" / "model"), check=False), "is a file")
    model = tmp_path / "model"
    run_script("export.py", "--checkpoint", smoke_run, "--out", str(model))
    run_script("export.py", "--checkpoint", smoke_run, "--out", str(model), "--overwrite")
    assert (model / "model.jax").exists() and (model / MARKER).exists()
    assert sorted(os.listdir(tmp_path)) == ["file", "mine", "model"]  # no staging left


def test_shift_testset_never_writes_into_a_dataset_or_the_run(smoke_run, tmp_path):
    import shutil

    from multimodal.run.files import load_run_config
    from scripts_helper import refused, run_script

    root = load_run_config(smoke_run).data.options["root"]
    copy = tmp_path / "dataset_copy"
    shutil.copytree(root, copy)
    before = _tree(copy)
    refused(run_script("shift_testset.py", "--run", smoke_run, "--out", str(copy),
                       "--no-progress", check=False), "not empty")
    refused(run_script("shift_testset.py", "--run", smoke_run, "--out",
                       os.path.join(root, "shifted"), "--no-progress", check=False),
            "inside the dataset folder")
    refused(run_script("shift_testset.py", "--run", smoke_run, "--out", smoke_run,
                       "--no-progress", check=False), "is the run itself")
    assert _tree(copy) == before and not os.path.exists(os.path.join(root, "shifted"))
    out = tmp_path / "shifted"
    run_script("shift_testset.py", "--run", smoke_run, "--out", str(out), "--shifts", "gamma",
               "--no-progress")
    import yaml
    with open(out / "dataset.yaml") as f:  # its paths name the final folder, not the staging one
        assert yaml.safe_load(f)["data"]["options"]["csv"] == str(out / "labels.csv")
