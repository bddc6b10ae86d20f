"""Merged sources (data.sources): namespaced ids and groups, label maps, the config's one-of
rule, the perceptual near-duplicate check across sources, per-source evaluation rows."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import write_csv
from multimodal.config import Config, ConfigError, config_from_dict, load_config
from multimodal.data.images import perceptual
from multimodal.data.records.prepare import inputs_hash, prepared_settings
from multimodal.data.sample import SAMPLE_DIR
from multimodal.data.split import near_duplicates
from multimodal.data.split.build import dataset_folders, load_table, resolve_split
from multimodal.data.split.grouped import content_hashes
from multimodal.errors import LeakageError
from multimodal.evaluation.subgroups import subgroup_tables
from scripts_helper import refused, run_script

CONFIG = "configs/ham10000_two_sources_sample.yaml"
IMAGES = os.path.join(SAMPLE_DIR, "images")


def _one_image_per_lesion(n: int, skip: int = 0) -> list[str]:
    """File names of n sample pictures of n different lesions (no two alike)."""
    meta = pd.read_csv(os.path.join(SAMPLE_DIR, "HAM10000_metadata.csv"))
    firsts = meta.drop_duplicates("lesion_id")["image_id"].tolist()
    return [f"{i}.jpg" for i in firsts[skip:skip + n]]


def _csv_entry(tmp_path, name: str, files, labels, ids=None, groups=None, extra=None,
               image_root=IMAGES) -> dict:
    """A csv-source entry over `files` (in image_root) with these labels, ids and groups."""
    ids = ids or [f"x{k}" for k in range(len(files))]
    groups = groups or ids
    header = ["file", "id", "patient", "diagnosis", "age"] + list(extra or {})
    rows = [[f, i, g, y, 40 + k] + [v[k] for v in (extra or {}).values()]
            for k, (f, i, g, y) in enumerate(zip(files, ids, groups, labels))]
    path = write_csv(tmp_path / f"{name}.csv", header, rows)
    metadata = {"age": "numeric", **{c: "categorical" for c in extra or {}}}
    return {"source": "csv", "name": name,
            "options": {"csv": str(path), "image_root": str(image_root), "image_column": "file",
                        "id_column": "id", "group_column": "patient",
                        "label_column": "diagnosis", "metadata": metadata}}


def _config(sources, **data) -> Config:
    return config_from_dict({"data": {"sources": sources, **data}})


def test_same_ids_in_two_sources_stay_distinct_images_and_groups(tmp_path):
    files = _one_image_per_lesion(8)
    a = _csv_entry(tmp_path, "clinic_a", files[:4], ["mel", "nv", "mel", "nv"],
                   groups=["P001", "P001", "P002", "P002"], extra={"site": list("hhhh")})
    b = _csv_entry(tmp_path, "clinic_b", files[4:], ["nv", "mel", "nv", "mel"],
                   groups=["P001", "P001", "P002", "P002"])
    cfg = _config([a, b], source_as_metadata=True)
    table = load_table(cfg.data)
    frame = table.frame
    assert table.name == "clinic_a+clinic_b" and len(frame) == 8
    assert frame["image_id"].tolist()[:2] == ["clinic_a:x0", "clinic_a:x1"]
    assert frame["image_id"].tolist()[4:6] == ["clinic_b:x0", "clinic_b:x1"]
    assert frame["group_id"].nunique() == 4  # P001 of clinic_a is not P001 of clinic_b
    assert set(frame["group_id"]) == {"clinic_a:P001", "clinic_a:P002", "clinic_b:P001",
                                      "clinic_b:P002"}
    assert frame["source"].tolist() == ["clinic_a"] * 4 + ["clinic_b"] * 4
    # metadata: the union, missing where a source lacks the column; the source as a feature
    assert table.metadata == {"age": "numeric", "site": "categorical", "source": "categorical"}
    assert frame["site"].iloc[:4].tolist() == list("hhhh") and frame["site"].iloc[4:].isna().all()
    # a grouped split keeps each source's P001 whole, and the two apart as groups
    split = resolve_split(table, dataclasses.replace(cfg.data, fold=0, folds=4))
    parts = split.set_index("image_id")["fold"]
    for group in frame["group_id"].unique():
        ids = frame.loc[frame["group_id"] == group, "image_id"]
        assert parts[ids].nunique() == 1
    assert dataset_folders(cfg.data)  # each entry's files are protected from outputs

    # the prepared-data key covers every source: another name or label map, another digest
    settings = prepared_settings(32)
    digest = inputs_hash(table, split, "fold", settings, content_hashes(frame["image_path"]))
    for changed in ({**b, "name": "clinic_c"}, {**b, "label_map": {"nv": "nevus", "mel": "mel"}}):
        other = load_table(_config([a, changed], source_as_metadata=True).data)
        other_split = split.assign(image_id=other.frame["image_id"].to_numpy())
        assert inputs_hash(other, other_split, "fold", settings,
                           content_hashes(other.frame["image_path"])) != digest


def test_config_takes_one_of_source_and_sources(tmp_path):
    entry = {"source": "ham10000", "options": {"root": SAMPLE_DIR}}
    with pytest.raises(ConfigError, match="both data.source .* and data.sources"):
        config_from_dict({"data": {"source": "ham10000", "sources": [entry]}})
    with pytest.raises(ConfigError, match="neither data.source nor data.sources"):
        config_from_dict({"data": {"source": None}})
    with pytest.raises(ConfigError, match="data.options belongs to data.source"):
        config_from_dict({"data": {"sources": [entry], "options": {"root": SAMPLE_DIR}}})
    with pytest.raises(ConfigError, match=r"data.sources\[1\]: name 'csv' is also"):
        _config([{"source": "csv"}, {"source": "csv"}])
    with pytest.raises(ConfigError, match="unknown key"):
        _config([{**entry, "root": "x"}])
    with pytest.raises(ConfigError, match=r"data.sources\[0\] \(ham10000\): .*'bogus'"):
        load_table(_config([{**entry, "options": {"root": SAMPLE_DIR, "bogus": 1}}]).data)
    with pytest.raises(ConfigError, match="needs data.sources"):
        config_from_dict({"data": {"source_as_metadata": True}})
    # a single source still reads as before (saved runs' config.yaml)
    assert load_config("configs/ham10000_sample.yaml").data.sources is None

    # the shipped two-source config: completed entries, and its saved form reads back
    cfg = load_config(CONFIG, smoke=True)
    assert cfg.data.source is None and cfg.data.options == {}
    assert [e["name"] for e in cfg.data.sources] == ["site_a", "site_b"]
    assert cfg.data.sources[0]["label_map"] is None
    saved = yaml.safe_load(yaml.safe_dump(cfg.to_dict()))
    assert config_from_dict(saved).data.sources == cfg.data.sources
    # --set reaches into an entry
    moved = load_config(CONFIG, ["data.sources.1.name=clinic", "data.sources.0.options.root=/x"])
    assert moved.data.sources[1]["name"] == "clinic"
    assert moved.data.sources[0]["options"]["root"] == "/x"
    with pytest.raises(ConfigError, match="not an entry"):
        load_config(CONFIG, ["data.sources.5.name=x"])


def test_label_map_applied_dropped_and_unmapped_refused(tmp_path):
    files = _one_image_per_lesion(6)
    a = _csv_entry(tmp_path, "a", files[:3], ["mel", "nv", "bcc"])
    b = _csv_entry(tmp_path, "b", files[3:], ["melanoma", "nevus", "naevus spilus"])
    b["label_map"] = {"melanoma": "mel", "nevus": "nv", "naevus spilus": "drop"}
    with pytest.warns(UserWarning, match="drops 1 row"):
        table = load_table(_config([a, b]).data)
    assert table.classes == ("bcc", "mel", "nv")  # a's classes; b's mapped onto them
    assert table.frame["label"].tolist() == ["mel", "nv", "bcc", "mel", "nv"]
    assert "b:x2" not in set(table.frame["image_id"])

    b["label_map"] = {"melanoma": "mel"}
    with pytest.raises(ConfigError) as err:
        load_table(_config([a, b]).data)
    line = err.value.one_line()
    assert "'nevus' (1 rows), 'naevus spilus' (1 rows)" in line and "not mapped" in line
    b["label_map"] = {"melanoma": "mel", "nevus": "nv", "naevus spilus": "nv", "Melanoma": "mel"}
    with pytest.raises(ConfigError, match=r"\['Melanoma'\] are not labels of"):
        load_table(_config([a, b]).data)

    # from the command line: one error line, before any work
    out = run_script("train.py", "--config", CONFIG, "--smoke", "--workdir",
                     str(tmp_path / "run"), "--set",
                     "data.sources.1.label_map={melanoma: mel, nevus: nv}", check=False)
    refused(out, "data.sources[1].label_map", "not mapped", "'basal cell carcinoma'")
    out = run_script("train.py", "--config", CONFIG, "--smoke", "--workdir",
                     str(tmp_path / "run"), "--set", "data.source=ham10000", check=False)
    refused(out, "both data.source")


def _reencoded(src: str, dest, scale: float, quality: int) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS).save(
            dest, "JPEG", quality=quality)


def test_perceptual_hash_catches_a_resized_reencoded_copy_across_sources(tmp_path):
    files = _one_image_per_lesion(40)
    copies = tmp_path / "copies"
    copies.mkdir()
    for name in files[20:]:
        os.symlink(os.path.join(IMAGES, name), copies / name)
    _reencoded(os.path.join(IMAGES, files[0]), copies / "copy.jpg", 0.6, 70)
    a = _csv_entry(tmp_path, "a", files[:20], ["mel", "nv"] * 10)
    b = _csv_entry(tmp_path, "b", files[20:] + ["copy.jpg"], ["mel", "nv"] * 10 + ["mel"],
                   image_root=copies)
    cfg = _config([a, b])
    table = load_table(cfg.data)
    digests = content_hashes(table.frame["image_path"])
    assert len(set(digests)) == len(digests)  # the byte hash alone sees nothing

    pairs = near_duplicates.near_pairs(table, "sources", digests, str(tmp_path / "cache"))
    assert pairs[["image_id_a", "image_id_b"]].values.tolist() == [["a:x0", "b:x20"]]
    assert pairs["bits"].iloc[0] <= near_duplicates.TOLERANCE
    assert os.listdir(tmp_path / "cache")  # hashed once, cached by the files' sha256
    # distinct pictures are far apart: the nearest of the 40 is well beyond the tolerance
    hashes, ok = perceptual.phashes([os.path.join(IMAGES, f) for f in files])
    words = perceptual.words(hashes)
    dist = perceptual.distances(words, words)
    assert ok.all() and dist[np.triu_indices(len(files), 1)].min() > near_duplicates.TOLERANCE

    # a new split keeps the copy with its original (the groups are linked), with a warning
    with pytest.warns(near_duplicates.NearDuplicateWarning, match="a:x0 ~ b:x20"):
        split = resolve_split(table, cfg.data, save_to=str(tmp_path / "split.csv"))
    part = split.set_index("image_id")["split"]
    assert part["a:x0"] == part["b:x20"]
    assert split["group_id"].str.startswith(("a:", "b:")).all()  # group ids unchanged
    # a split file that separates them is refused, naming both and the distance
    moved = split.copy()
    moved.loc[moved["image_id"] == "b:x20", "split"] = \
        "test" if part["a:x0"] != "test" else "train"
    moved.to_csv(tmp_path / "moved.csv", index=False)
    from_file = dataclasses.replace(cfg.data, split_file=str(tmp_path / "moved.csv"))
    with pytest.raises(LeakageError, match="near-duplicate pictures across sources a:x0") as err:
        resolve_split(table, from_file)
    assert "bits apart" in str(err.value) and "near_duplicates=off" in str(err.value)
    resolve_split(table, dataclasses.replace(from_file, near_duplicates="off"))  # when asked


def test_source_is_a_subgroup_only_when_the_rows_have_several():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    probs = np.eye(2)[labels] * 0.6 + 0.2
    two = pd.DataFrame({"source": ["a"] * 20 + ["b"] * 20, "sex": ["male", "female"] * 20})
    assert [r["value"] for r in subgroup_tables(two, labels, probs)["source"]] == ["a", "b"]
    assert "source" not in subgroup_tables(two.assign(source="a"), labels, probs)


def test_two_source_smoke_training_and_evaluation_report_per_source(tmp_path):
    run = tmp_path / "run"
    out = run_script("train.py", "--config", CONFIG, "--smoke", "--no-progress",
                     "--workdir", str(run))
    split = pd.read_csv(run / "split.csv")
    assert set(split["image_id"].str.split(":").str[0]) == {"site_a", "site_b"}
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["source"] is None and len(saved["data"]["sources"]) == 2
    assert "near-duplicate" not in out.stderr  # the two halves share no picture
    run_script("evaluate.py", "--checkpoint", str(run), "--out", str(tmp_path / "eval"),
               "--bootstrap", "20", "--saliency", "0")
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    rows = {r["value"]: r for r in result["subgroups"]["source"]}
    test = split[split["split"] == "test"]
    assert set(rows) == {"site_a", "site_b"}
    assert rows["site_b"]["n"] == int(test["image_id"].str.startswith("site_b:").sum())
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "### By source" in report and "| site_b |" in report
