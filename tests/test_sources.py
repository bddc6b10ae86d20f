import os

import numpy as np
import pandas as pd
import pytest

from conftest import HAM_HEADER, ham_rows, write_csv, write_image
from multimodal.data.sources import SOURCES, load_source
from multimodal.data.sources import chestxray, fitzpatrick17k, ham10000, isic2018
from multimodal.data.table import REQUIRED


def test_ham10000_standard_table(ham_dir):
    table = ham10000.load(str(ham_dir))
    frame = table.frame
    assert table.classes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    for column in REQUIRED + ("age", "sex", "localization", "dx_type"):
        assert column in frame.columns
    assert "dx_type" not in table.metadata  # leaks the label: kept, never a feature
    assert (frame["group_id"] == frame["lesion_id"]).all()
    assert frame["age"].dtype == float and frame["age"].isna().sum() > 0
    assert set(frame["label"]) == set(table.classes)
    assert all(os.path.exists(p) for p in frame["image_path"])


def test_ham10000_original_two_part_layout(tmp_path):
    rows = ham_rows(10)
    for part in (1, 2):
        (tmp_path / f"HAM10000_images_part_{part}").mkdir()
    for i, row in enumerate(rows):
        write_image(tmp_path / f"HAM10000_images_part_{1 + i % 2}" / f"{row[1]}.jpg", seed=i)
    write_csv(tmp_path / "HAM10000_metadata.csv", HAM_HEADER, rows)
    table = ham10000.load(str(tmp_path))
    assert len(table) == len(rows)
    assert {os.path.basename(os.path.dirname(p)) for p in table.frame["image_path"]} == {
        "HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_isic2018_one_hot_maps_to_ham_classes(tmp_path):
    cols = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [["ISIC_1", 1, 0, 0, 0, 0, 0, 0], ["ISIC_2", 0, 0, 0, 0, 0, 0, 1.0],
            ["ISIC_3", 0, 1, 0, 0, 0, 0, 0]]
    (tmp_path / "img").mkdir()
    for i, r in enumerate(rows):
        write_image(tmp_path / "img" / f"{r[0]}.jpg", seed=i)
    gt = write_csv(tmp_path / "gt.csv", cols, rows)
    meta = write_csv(tmp_path / "meta.csv", ["image", "age_approx", "sex", "lesion_id"],
                     [["ISIC_1", "45", "male", "L1"], ["ISIC_2", "", "female", "L1"]])
    table = isic2018.load(str(gt), str(tmp_path / "img"), metadata_csv=str(meta))
    frame = table.frame.set_index("image_id")
    assert table.classes == ham10000.CLASSES
    assert frame.loc["ISIC_1", "label"] == "mel" and frame.loc["ISIC_2", "label"] == "vasc"
    assert frame.loc["ISIC_1", "age"] == 45 and np.isnan(frame.loc["ISIC_3", "age"])
    assert frame.loc["ISIC_3", "sex"] == "unknown"
    assert frame.loc["ISIC_2", "group_id"] == "L1" and frame.loc["ISIC_3", "group_id"] == "ISIC_3"


def test_isic2018_rejects_rows_without_one_positive(tmp_path):
    cols = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    gt = write_csv(tmp_path / "gt.csv", cols, [["ISIC_1", 1, 1, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="line 2.*exactly one"):
        isic2018.load(str(gt), str(tmp_path))


FITZ_HEADER = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
               "nine_partition_label", "three_partition_label", "qc", "url", "url_alphanum"]


@pytest.mark.parametrize("granularity,n_classes", [("label", 3), ("three_partition_label", 2)])
def test_fitzpatrick17k_granularity_and_missing_skin_type(tmp_path, granularity, n_classes):
    rows = [["a" * 32, "3", "2", "psoriasis", "inflammatory", "non-neoplastic", "", "u", ""],
            ["b" * 32, "-1", "-1", "melanoma", "malignant melanoma", "malignant", "", "u", ""],
            ["c" * 32, "6", "5", "acne", "inflammatory", "non-neoplastic", "", "u", ""]]
    for i, r in enumerate(rows):
        write_image(tmp_path / f"{r[0]}.jpg", seed=i)
    csv = write_csv(tmp_path / "f.csv", FITZ_HEADER, rows)
    table = fitzpatrick17k.load(str(csv), str(tmp_path), label_column=granularity)
    assert len(table.classes) == n_classes
    f = table.frame.set_index("image_id")
    assert f.loc["a" * 32, "fitzpatrick"] == 3 and np.isnan(f.loc["b" * 32, "fitzpatrick"])
    assert np.isnan(f.loc["b" * 32, "fitzpatrick_centaur"])
    assert table.metadata == {"fitzpatrick": "ordinal"}


def test_fitzpatrick17k_rejects_impossible_skin_type(tmp_path):
    csv = write_csv(tmp_path / "f.csv", FITZ_HEADER, [["a", "9", "1", "x", "y", "z", "", "u", ""]])
    with pytest.raises(ValueError, match="line 2.*fitzpatrick_scale"):
        fitzpatrick17k.load(str(csv), str(tmp_path), verify="none")


COVID_HEADER = ["patientid", "offset", "sex", "age", "finding", "view", "modality", "folder",
                "filename"]


def _covid(tmp_path):
    rows = [["1", "0", "M", "65", "COVID-19", "PA", "X-ray", "images", "a.png"],
            ["1", "3", "M", "65", "COVID-19", "AP", "X-ray", "images", "b.png"],
            ["2", "", "F", "", "No Finding", "PA", "X-ray", "images", "c.jpg"],
            ["3", "", "", "40", "Pneumonia", "L", "X-ray", "images", "d.jpg"],
            ["4", "", "F", "50", "Pneumonia", "L", "X-ray", "images", "d.jpg"],  # same file
            ["5", "", "F", "50", "COVID-19", "Axial", "CT", "images", "e.jpg"]]
    (tmp_path / "images").mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]):
        write_image(tmp_path / "images" / name, seed=i)
    write_csv(tmp_path / "index.csv", ["source_file", "stored_file"],
              [["a.png", "a.jpg"], ["b.png", "b.jpg"]])
    return write_csv(tmp_path / "metadata.csv", COVID_HEADER, rows)


def test_covid_chestxray_opacity_mapping_and_groups(tmp_path):
    csv = _covid(tmp_path)
    with pytest.warns(UserWarning, match="1 duplicated filename"):
        table = chestxray.load_covid(str(csv), str(tmp_path / "images"),
                                     index_csv=str(tmp_path / "index.csv"))
    f = table.frame.set_index("image_id")
    assert table.classes == ("none", "opacity")
    assert list(f.index) == ["a", "b", "c", "d"]  # CT row filtered, duplicate file kept once
    assert f.loc["c", "label"] == "none" and f.loc["a", "label"] == "opacity"
    assert f.loc["a", "group_id"] == f.loc["b", "group_id"]
    assert f.loc["d", "sex"] == "unknown" and f.loc["b", "view"] == "AP"


def test_covid_patients_sharing_an_image_become_one_group(tmp_path):
    csv = _covid(tmp_path)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False).assign(group_id=lambda d:
                                                                      "p" + d.patientid)
    merged = chestxray._merge_groups(frame, "filename")
    assert merged[3] == merged[4] and merged[0] != merged[3]


def test_covid_custom_mapping_rejects_unmapped_finding(tmp_path):
    csv = _covid(tmp_path)
    with pytest.raises(ValueError, match="Pneumonia.*no label mapping"):
        chestxray.load_covid(str(csv), str(tmp_path / "images"),
                             label_map={"COVID-19": "covid", "No Finding": "none"})


def test_siim_study_labels_four_class_and_binary(tmp_path):
    study = write_csv(tmp_path / "study.csv", ["id", "Negative for Pneumonia", "Typical Appearance",
                                               "Indeterminate Appearance", "Atypical Appearance"],
                      [["s1_study", 1, 0, 0, 0], ["s2_study", 0, 0, 1, 0]])
    image = write_csv(tmp_path / "image.csv", ["id", "boxes", "label", "StudyInstanceUID"],
                      [["i1_image", "", "none 1 0 0 1 1", "s1"], ["i2_image", "", "", "s2"],
                       ["i3_image", "", "", "s2"]])
    (tmp_path / "img").mkdir()
    for i in (1, 2, 3):
        write_image(tmp_path / "img" / f"i{i}.png", seed=i)
    four = chestxray.load_siim(str(study), str(image), str(tmp_path / "img"))
    assert list(four.frame["label"]) == ["negative", "indeterminate", "indeterminate"]
    assert four.frame["group_id"].nunique() == 2
    two = chestxray.load_siim(str(study), str(image), str(tmp_path / "img"), binary=True)
    assert list(two.frame["label"]) == ["none", "opacity", "opacity"]


def test_generic_csv_from_config(tmp_path):
    (tmp_path / "im").mkdir()
    rows = []
    for i in range(4):
        write_image(tmp_path / "im" / f"{i}.png", seed=i)
        rows.append([f"im/{i}.png", "pos" if i % 2 else "neg", f"P{i // 2}", str(30 + i), "x"])
    csv = write_csv(tmp_path / "d.csv", ["file", "y", "patient", "age", "site"], rows)
    table = load_source("csv", csv=str(csv), image_column="file", label_column="y",
                        group_column="patient", metadata={"age": "numeric", "site": "categorical"})
    assert table.classes == ("neg", "pos")
    assert table.frame["group_id"].tolist() == ["P0", "P0", "P1", "P1"]
    assert table.frame["age"].tolist() == [30.0, 31.0, 32.0, 33.0]
    # the csv source's own `name` option reaches it (it once clashed with load_source's)
    named = load_source("csv", csv=str(csv), image_column="file", label_column="y", name="mine")
    assert named.name == "mine"


def test_unknown_source_name():
    with pytest.raises(ValueError, match="unknown dataset source 'nope'"):
        load_source("nope")
    assert {"ham10000", "isic2018", "fitzpatrick17k", "covid_chestxray", "siim_covid",
            "csv"} <= set(SOURCES)


def test_isic2018_root_finds_the_archive_layout_or_says_what_is_missing(tmp_path):
    from multimodal.errors import ConfigError, DataError

    root = tmp_path / "isic2018"
    (root / "ISIC2018_Task3_Test_GroundTruth").mkdir(parents=True)
    with pytest.raises(DataError, match="no ground-truth CSV") as exc:
        isic2018.load(root=str(root))
    assert "--set data.options.ground_truth_csv=" in str(exc.value)
    cols = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    write_csv(root / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv",
              cols, [["ISIC_1", 0, 0, 1, 0, 0, 0, 0]])
    (root / "ISIC2018_Task3_Test_Input").mkdir()
    write_image(root / "ISIC2018_Task3_Test_Input" / "ISIC_1.jpg")
    table = isic2018.load(root=str(root))
    assert table.frame["label"].tolist() == ["bcc"]
    with pytest.raises(ConfigError, match="give root"):
        isic2018.load(ground_truth_csv="gt.csv")
