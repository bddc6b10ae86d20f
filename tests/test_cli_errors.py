"""Every everyday mistake, through the real scripts: exit code 2, one `error:` line that
says what, where and what to do, no traceback, and nothing written or overwritten."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import HAM_HEADER, ham_rows, write_csv
from scripts_helper import refused, run_script

SMOKE = ("--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress")




def snapshot(folder):
    """{relative path: (size, mtime_ns)} of every file below `folder`."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def run_dir(smoke_run):
    return smoke_run


def test_resume_without_a_run_refuses_and_creates_nothing(tmp_path):
    work = tmp_path / "never"
    refused(run_script("train.py", "--workdir", str(work), "--resume", check=False),
            "no run directory")
    os.makedirs(work)
    (work / "config.yaml").write_text("name: x\n")
    refused(run_script("train.py", "--workdir", str(work), "--resume", check=False),
            "holds no checkpoint", "without --resume")
    assert sorted(os.listdir(work)) == ["config.yaml"]


def test_resume_uses_the_runs_own_config_and_refuses_changes(run_dir):
    before = snapshot(run_dir)
    line = refused(run_script("train.py", "--workdir", str(run_dir), "--resume", "--set",
                              "train.learning_rate=0.5", check=False),
                   "train.learning_rate", "--resume")
    assert "python scripts/train.py --workdir" in line
    refused(run_script("train.py", "--workdir", str(run_dir), "--resume", "--config",
                       "configs/ham10000.yaml", check=False), "would change")
    # a fresh run into the same folder is refused too, pointing at --resume
    refused(run_script("train.py", *SMOKE, "--workdir", str(run_dir), check=False),
            "already holds a run", "--resume")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("override, needle", [
    ("data.batch_size=0", "data.batch_size: 0 is out of range"),
    ("train.epochs=-1", "train.epochs: -1 is out of range"),
    ("model.encoder=resnet51", "unknown encoder 'resnet51'"),
    ("data.augment=[flip_h, twirl]", "unknown augmentation 'twirl'"),
    ("model.pretrained=efficientnet_lite7", "no weights named"),
    ("data.batch_size=6", "must divide evenly over 4 devices"),
])
def test_bad_settings_refused_before_any_work(tmp_path, override, needle):
    if "divide" in needle and os.environ.get("XLA_FLAGS", "").find("device_count=4") < 0:
        pytest.skip("needs 4 host devices (make test sets them)")
    work = tmp_path / "run"
    refused(run_script("train.py", *SMOKE, "--workdir", str(work), "--set", override,
                       check=False), needle)
    assert not work.exists()


def _ham_config(tmp_path, root, extra=""):
    config = tmp_path / "bad.yaml"
    config.write_text(f"data:\n  source: ham10000\n  options: {{root: {root}}}\n  image_size: 16\n"
                      f"  batch_size: 8\n{extra}train:\n  epochs: 1\n  max_steps: 2\n")
    return str(config)


@pytest.mark.parametrize("damage, needle", [
    ("truncated", "unreadable image"),
    ("zero", "empty image file"),
    ("text", "unreadable image"),
])
def test_broken_images_name_file_and_row(tmp_path, ham_dir, damage, needle):
    rows = ham_rows()
    path = ham_dir / "images" / f"{rows[6][1]}.jpg"
    data = path.read_bytes()
    scan = data.rindex(b"\xff\xda")  # truncated after a whole header: found when preparing
    path.write_bytes({"truncated": data[: scan + (len(data) - scan) // 3], "zero": b"",
                      "text": b"this is not a picture"}[damage])
    work = tmp_path / "run"
    line = refused(run_script("train.py", "--config", _ham_config(tmp_path, ham_dir),
                              "--workdir", str(work), "--no-progress", check=False),
                   needle, "line 8", f"{rows[6][1]}.jpg", "data.on_missing=drop")
    assert "HAM10000_metadata.csv" in line
    assert not (work / "checkpoints").exists()


def test_bad_csv_files_are_named(tmp_path, ham_dir):
    csv = ham_dir / "HAM10000_metadata.csv"
    csv.write_bytes("lesion_id,image_id,dx\n".encode() + "HAM_1,ISIC_1,n\xe9v\n".encode("latin-1"))
    refused(run_script("explore.py", "--config", _ham_config(tmp_path, ham_dir), "--out",
                       str(tmp_path / "x"), check=False), "HAM10000_metadata.csv", "UTF-8")
    csv.write_text("")
    refused(run_script("explore.py", "--config", _ham_config(tmp_path, ham_dir), "--out",
                       str(tmp_path / "x"), check=False), "HAM10000_metadata.csv", "empty")
    write_csv(csv, HAM_HEADER, [])
    refused(run_script("explore.py", "--config", _ham_config(tmp_path, ham_dir), "--out",
                       str(tmp_path / "x"), check=False), "HAM10000_metadata.csv", "no rows")


def _copy_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("prepared", "eval"))
    return copy


def test_damaged_runs_say_what_is_missing(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path)
    (run / "config.yaml").write_text((run / "config.yaml").read_text()[:200] + "\n  - [unclosed")
    refused(run_script("evaluate.py", "--checkpoint", str(run), check=False),
            "config.yaml is damaged")
    assert not (run / "eval").exists()

    run = _copy_run(run_dir, tmp_path / "b")
    for kind in ("best", "latest"):
        for step in os.listdir(run / "checkpoints" / kind):
            shutil.rmtree(run / "checkpoints" / kind / step)
    refused(run_script("evaluate.py", "--checkpoint", str(run), check=False),
            "no readable checkpoint")
    assert not (run / "eval").exists()

    run = _copy_run(run_dir, tmp_path / "c")
    os.remove(run / "classes.json")
    refused(run_script("evaluate.py", "--checkpoint", str(run), check=False),
            "classes.json", "missing")

    refused(run_script("evaluate.py", "--checkpoint", str(tmp_path / "nothing"), check=False),
            "no run directory")
    refused(run_script("late_fusion.py", "--members", str(tmp_path), str(tmp_path), "--out",
                       str(tmp_path / "f"), check=False), "not run directories")


def test_missing_best_falls_back_to_latest_with_a_warning(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path)
    shutil.rmtree(run / "checkpoints" / "best")
    out = run_script("evaluate.py", "--checkpoint", str(run), "--bootstrap", "10",
                     "--saliency", "0", "--out", str(tmp_path / "eval"))
    assert "no finished step in checkpoints/best" in out.stderr
    assert "loaded checkpoints/latest/" in out.stderr
    assert (tmp_path / "eval" / "metrics.json").exists()


def test_prepared_mismatch_hint_is_a_real_command(tmp_path):
    out_dir = tmp_path / "prep"
    run_script("prepare_data.py", *SMOKE[:2], "--out", str(out_dir), "--set", "data.image_size=16")
    line = refused(run_script("prepare_data.py", *SMOKE[:2], "--out", str(out_dir), "--set",
                              "data.image_size=24", check=False), "prepared from other inputs")
    assert "--overwrite" in line
    run_script("prepare_data.py", *SMOKE[:2], "--out", str(out_dir), "--set",
               "data.image_size=24", "--overwrite")


def test_an_image_that_fails_to_decode_when_prepared_obeys_on_missing(tmp_path, ham_dir):
    from multimodal.data.records import prepare
    from multimodal.data.sources import ham10000
    from multimodal.data.split.grouped import train_val_test
    from multimodal.errors import DataError

    rows = ham_rows()
    path = ham_dir / "images" / f"{rows[6][1]}.jpg"
    data = path.read_bytes()
    scan = data.rindex(b"\xff\xda")
    path.write_bytes(data[: scan + (len(data) - scan) // 3])
    table = ham10000.load(str(ham_dir))  # verify: exists passes a whole header
    split = train_val_test(table, seed=0)
    with pytest.raises(DataError, match=r"line 8: unreadable image") as err:
        prepare.prepare(table, split, str(tmp_path / "a"), image_size=16)
    assert err.value.file.endswith("HAM10000_metadata.csv") and "on_missing=drop" in str(err.value)
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) whose image does not decode"):
        manifest = prepare.prepare(table, split, str(tmp_path / "b"), image_size=16,
                                   on_missing="drop")
    assert manifest["dropped_unreadable"] == [rows[6][1]]
    assert sum(manifest["splits"].values()) == len(table) - 1
    readable = sum(len(prepare.open_split(str(tmp_path / "b"), s)) for s in manifest["splits"])
    assert readable == len(table) - 1
