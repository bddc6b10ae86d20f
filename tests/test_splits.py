import shutil

import numpy as np
import pytest

from multimodal.data.split import grouped as splits
from multimodal.errors import DataError, LeakageError
from multimodal.data.sample import SAMPLE_DIR
from multimodal.data.sources import ham10000


@pytest.fixture(scope="module")
def sample():
    return ham10000.load(SAMPLE_DIR)


def test_train_val_test_is_grouped_stratified_and_covers_all(sample):
    split = splits.train_val_test(sample, val=0.15, test=0.15, seed=0)
    assert len(split) == len(sample) and set(split["split"]) == {"train", "val", "test"}
    assert split.groupby("group_id")["split"].nunique().max() == 1
    shares = split["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.15) < 0.04 and abs(shares["val"] - 0.15) < 0.04
    overall = split["label"].value_counts(normalize=True)
    for part in ("train", "val", "test"):
        share = split[split["split"] == part]["label"].value_counts(normalize=True)
        assert (share.reindex(overall.index, fill_value=0) - overall).abs().max() < 0.06, part
    assert splits.check_leakage(sample, split) == []


def test_split_is_reproducible_from_seed(sample):
    a = splits.train_val_test(sample, seed=3)
    b = splits.train_val_test(sample, seed=3)
    c = splits.train_val_test(sample, seed=4)
    assert a.equals(b)
    assert not a["split"].equals(c["split"])


def test_kfold_grouped_and_balanced(sample):
    folds = splits.grouped_kfold(sample, k=5, seed=0)
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert folds.groupby("group_id")["fold"].nunique().max() == 1
    counts = folds.groupby("fold").size()
    assert counts.max() - counts.min() < 0.1 * len(sample)
    per_fold = folds.groupby("fold")["label"].apply(lambda s: (s == "df").sum())
    assert per_fold.min() >= 4  # 36 df images spread over 5 folds


def test_stratify_on_extra_column_with_bins(sample):
    key = splits.stratify_key(sample.frame, ("label", "age"), bins={"age": [0, 40, 60, 120]})
    assert key.str.contains(r"\|\(40.0, 60.0\]").any() and key.str.contains("missing").any()
    split = splits.train_val_test(sample, stratify=("label", "sex"), seed=1)
    assert split.groupby("group_id")["split"].nunique().max() == 1


def test_leak_check_refuses_a_group_in_two_splits(sample):
    split = splits.train_val_test(sample, seed=0)
    group = sample.frame.groupby("group_id").size().idxmax()  # a lesion with several images
    rows = split.index[split["group_id"] == group]
    split.loc[rows[0], "split"] = "train"
    split.loc[rows[1], "split"] = "test"
    with pytest.raises(LeakageError, match=f"group {group}"):
        splits.check_leakage(sample, split)
    with pytest.warns(splits.LeakageWarning):
        assert splits.check_leakage(sample, split, allow=True)


def test_leak_check_finds_identical_images_under_different_groups(sample, tmp_path):
    """Same picture, two ids, two groups: only the content hash can catch it."""
    frame = sample.frame.copy()
    a = frame.index[0]
    b = frame.index[frame["group_id"] != frame.loc[a, "group_id"]][0]
    assert frame.loc[a, "group_id"] != frame.loc[b, "group_id"]
    copy = tmp_path / "copy.jpg"
    shutil.copy(frame.loc[a, "image_path"], copy)
    frame.loc[b, "image_path"] = str(copy)
    table = type(sample)(frame, sample.classes, sample.metadata, sample.name)
    split = frame[["image_id", "group_id", "label"]].assign(split="train")
    split.loc[split["group_id"] == frame.loc[b, "group_id"], "split"] = "test"
    with pytest.raises(LeakageError, match="1 leak.*identical image"):
        splits.check_leakage(table, split)


def test_sample_has_the_two_known_byte_identical_pairs(sample):
    digest = splits.content_hashes(sample.frame["image_path"])
    dup = sample.frame[np.isin(digest, [d for d in digest if digest.count(d) > 1])]
    assert set(dup["image_id"]) == {"ISIC_0024366", "ISIC_0029861", "ISIC_0024777", "ISIC_0029938"}


def test_image_level_split_warns_and_leaks(sample):
    with pytest.warns(splits.LeakageWarning, match="splitting by IMAGE"):
        split = splits.train_val_test(sample, seed=0, by="image")
    with pytest.raises(LeakageError):
        splits.check_leakage(sample, split)


def test_save_and_load_round_trip(sample, tmp_path):
    split = splits.train_val_test(sample, seed=0)
    path = tmp_path / "s" / "split.csv"
    splits.save_split(split, path)
    again = splits.load_split(path, sample)
    assert again["split"].tolist() == split["split"].tolist()
    bad = split.copy()
    bad.loc[0, "image_id"] = "ISIC_nope"
    splits.save_split(bad, tmp_path / "bad.csv")
    with pytest.raises(DataError, match="ISIC_nope"):
        splits.load_split(tmp_path / "bad.csv", sample)


def test_too_few_groups(sample):
    small = sample.subset(sample.frame["image_id"][:3])
    with pytest.raises(DataError, match="groups"):
        splits.grouped_kfold(small, k=5)
