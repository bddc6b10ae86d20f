"""Integration checks on the real datasets in ../shared/data (or $MULTIMODAL_DATA).

Missing data skips these tests, except under CI=true, where it fails them (conftest).
"""

import pytest

from conftest import require_shared_data
from multimodal.data.split import grouped as splits
from multimodal.data.sources import load_source


@pytest.fixture(scope="module")
def ham():
    """Loads the table on first use, so that missing data fails (or skips) inside the test."""
    loaded = []

    def get():
        if not loaded:
            loaded.append(load_source("ham10000", root=require_shared_data("ham10000")))
        return loaded[0]
    return get


def test_ham10000_counts(ham):
    ham = ham()
    assert len(ham) == 10015 and ham.frame["group_id"].nunique() == 7470
    assert ham.frame["label"].value_counts().to_dict() == {
        "nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115}


def test_ham10000_grouped_split_is_clean_and_image_split_is_refused(ham):
    ham = ham()
    hashes = splits.content_hashes(ham.frame["image_path"])
    assert len(hashes) - len(set(hashes)) == 2  # the two byte-identical pairs
    grouped = splits.train_val_test(ham, seed=0)
    assert splits.check_leakage(ham, grouped, hashes=hashes) == []
    with pytest.warns(splits.LeakageWarning):
        by_image = splits.train_val_test(ham, seed=0, by="image")
    with pytest.raises(splits.LeakageError):
        splits.check_leakage(ham, by_image, hashes=hashes)


def test_covid_chestxray_and_fitzpatrick_load():
    root = require_shared_data("covid_chestxray")
    with pytest.warns(UserWarning):
        xray = load_source("covid_chestxray", metadata_csv=f"{root}/metadata.csv",
                           image_dir=f"{root}/images", index_csv=f"{root}/image_index.csv",
                           on_missing="drop")
    assert len(xray) == 570 and set(xray.classes) == {"none", "opacity"}
    fitz = load_source("fitzpatrick17k",
                       csv=require_shared_data("fitzpatrick17k", "fitzpatrick17k.csv"),
                       image_dir="/nonexistent", verify="none")
    assert len(fitz) == 16577 and len(fitz.classes) == 114
    assert fitz.frame["fitzpatrick"].isna().sum() == 565


def test_prepared_ham10000_reads_back_every_example_once_per_epoch(ham, tmp_path):
    ham = ham()
    from multimodal.data.pipeline import loaders as pipeline
    from multimodal.data.records import prepare
    from multimodal.data.pipeline.metadata import MetadataEncoder

    split = splits.train_val_test(ham, seed=0)
    manifest = prepare.prepare(ham, split, str(tmp_path), image_size=16)
    assert sum(manifest["splits"].values()) == 10015
    source = prepare.open_split(str(tmp_path), "train")
    frame = prepare.split_frame(source, manifest)
    assert sorted(frame["image_id"]) == sorted(split.loc[split["split"] == "train", "image_id"])
    loader = pipeline.ExampleLoader(source, manifest["classes"],
                                    MetadataEncoder(manifest["metadata"]).fit(frame),
                                    manifest["metadata"], [], 16, pipeline.Normalizer(), True, 0)
    labels = frame["label"].map({c: i for i, c in enumerate(manifest["classes"])}).to_numpy()
    plan, steps = pipeline.training_plan(labels, 7, 1, 1, seed=0)
    ids = [b["image_id"][0] for b in pipeline.train_dataset(loader, plan, 1, threads=2)]
    assert len(ids) == len(set(ids)) == len(frame) == steps
