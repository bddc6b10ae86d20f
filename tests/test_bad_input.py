"""Every kind of bad input gives an error naming file, line and problem, or with
on_missing='drop' a warning that counts what was dropped."""

import os

import pytest

from conftest import HAM_HEADER, ham_rows, write_csv
from multimodal.errors import DataError
from multimodal.data.sources import ham10000


def _edit(ham_dir, row_index, column, value):
    rows = ham_rows()
    rows[row_index][HAM_HEADER.index(column)] = value
    write_csv(ham_dir / "HAM10000_metadata.csv", HAM_HEADER, rows)
    return rows


def test_missing_required_column(ham_dir):
    rows = [r[:2] + r[3:] for r in ham_rows()]
    write_csv(ham_dir / "HAM10000_metadata.csv", [h for h in HAM_HEADER if h != "dx"], rows)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: missing required column\(s\) \['dx'\]"):
        ham10000.load(str(ham_dir))


def test_missing_metadata_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        ham10000.load(str(tmp_path))


def test_missing_image_names_file_line_and_path(ham_dir):
    rows = ham_rows()
    os.remove(ham_dir / "images" / f"{rows[4][1]}.jpg")
    with pytest.raises(DataError) as err:
        ham10000.load(str(ham_dir))
    message = str(err.value)
    assert "HAM10000_metadata.csv" in message and "line 6" in message
    assert "image file not found" in message and f"{rows[4][1]}.jpg" in message
    assert err.value.line == 6


def test_missing_image_dropped_with_count(ham_dir):
    rows = ham_rows()
    for r in rows[:3]:
        os.remove(ham_dir / "images" / f"{r[1]}.jpg")
    with pytest.warns(UserWarning, match="dropped 3 row"):
        table = ham10000.load(str(ham_dir), on_missing="drop")
    assert len(table) == len(rows) - 3


def test_truncated_image_is_caught_by_decode(ham_dir):
    rows = ham_rows()
    path = ham_dir / "images" / f"{rows[7][1]}.jpg"
    data = path.read_bytes()
    scan = data.rindex(b"\xff\xda")  # start of the entropy-coded data: the header stays whole
    path.write_bytes(data[: scan + (len(data) - scan) // 2])
    ham10000.load(str(ham_dir), verify="exists")  # a whole header: the cheap check cannot see it
    with pytest.raises(DataError, match=r"line 9: unreadable image .*(?i:truncated)"):
        ham10000.load(str(ham_dir), verify="decode")


def test_unreadable_image(ham_dir):
    rows = ham_rows()
    (ham_dir / "images" / f"{rows[0][1]}.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"line 2: unreadable image \(UnidentifiedImageError"):
        ham10000.load(str(ham_dir), verify="decode")
    with pytest.warns(UserWarning, match="dropped 1 row"):
        assert len(ham10000.load(str(ham_dir), verify="decode", on_missing="drop")) == len(rows) - 1


def test_label_outside_class_list(ham_dir):
    _edit(ham_dir, 2, "dx", "melanoma")
    with pytest.raises(DataError, match=r"line 4: label 'melanoma' is not in the class list"):
        ham10000.load(str(ham_dir))


@pytest.mark.parametrize("age", ["-3", "200", "eighty"])
def test_impossible_age(ham_dir, age):
    _edit(ham_dir, 5, "age", age)
    with pytest.raises(DataError, match=rf"line 7: impossible age '{age}'"):
        ham10000.load(str(ham_dir))


def test_impossible_age_dropped_with_warning(ham_dir):
    rows = _edit(ham_dir, 5, "age", "200")
    with pytest.warns(UserWarning, match="dropped 1 row"):
        assert len(ham10000.load(str(ham_dir), on_missing="drop")) == len(rows) - 1


def test_duplicated_image_id_always_errors(ham_dir):
    _edit(ham_dir, 9, "image_id", ham_rows()[3][1])
    for on_missing in ("error", "drop"):
        with pytest.raises(DataError, match=r"line 5: duplicated image id 'ISIC_0000003'"):
            ham10000.load(str(ham_dir), on_missing=on_missing)


def test_bad_on_missing_value(ham_dir):
    with pytest.raises(ValueError, match="on_missing"):
        ham10000.load(str(ham_dir), on_missing="ignore")
