"""Property tests: whatever a user feeds the config loader, the metadata encoder, the split
reader or the image decoder, it either works or raises the one user-error class
(`UserError`), never another exception. Derandomized, so a CI failure reproduces."""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multimodal.config import Config, config_from_dict, load_config
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.records.prepare import encode_image
from multimodal.data.split.grouped import load_split
from multimodal.data.table import DatasetTable
from multimodal.errors import UserError

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def works_or_user_error(fn, *args, **kwargs):
    """fn's result, or None when it raised a UserError; any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except UserError as exc:
        assert exc.one_line() and "\n" not in exc.one_line()
        return None


# -- config overrides -------------------------------------------------------------------

def _dotted_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(Config)]
    for section in ("data", "model", "train"):
        keys += [f"{section}.{f.name}" for f in dataclasses.fields(getattr(Config(), section)
                                                                    .__class__)]
    return keys


KEYS = st.one_of(
    st.sampled_from(_dotted_keys()),
    st.sampled_from(["data.options.root", "data.options.a.b", "model.encoder_options.width",
                     "data.stratify_bins.age", "data.metadata_encoding.age", "train.lr",
                     "name.x", "data.image_size.x", "a.b.c", "", ".", "data.", ".data", "smoke",
                     " train.epochs ", "data..val"]),
    st.text(st.sampled_from("abcdefgh._ -"), max_size=12))

SCALAR_TEXT = st.sampled_from([
    "0", "1", "-1", "3", "32", "1e3", "1e400", "-1e400", "0.5", "1.5", ".5", "0x10", "0o7", "1_000",
    ".nan", ".NaN", "nan", "NaN", ".inf", "-.inf", "inf", "-inf", "true", "false", "yes", "no",
    "on", "off", "True", "null", "~", "", " ", "''", '""', "resnet51", "small_cnn", "image",
    "2021-01-01", "12:30:00", "!!binary aGk=", "!!python/object:os.system ls", "&a 1", "*a",
    "[", "]", "{", "}", "[flip_h, twirl]", "[flip_h]", "[]", "{}", "{a: 1}", "{age: binned}",
    "{age: [0, 40, 90]}", "[[1, 2], 3]", "{? [1, 2] : x}", "a: b: c", "- x", "| x", "> x",
    "'unclosed", '"unclosed', "%YAML 1.2", "@x", "`x", "#comment", "a # b", "x,y", "!x",
    "{a: .nan}", "[.inf]", "${MULTIMODAL_SAMPLE}", "${NOPE}/x", "=", "a=b", "\t", "\x00",
    "\u2028", "é", "9" * 40, "-0", "0.0", "1.0"])


def _as_yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


PY_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=6)

VALUE_TEXT = st.one_of(SCALAR_TEXT, PY_VALUES.map(_as_yaml),
                       st.text(st.sampled_from("01ab.-:#&*!|>'\"%@`{}[],=~ \\e"), max_size=10))


@PROPERTY
@given(st.lists(st.tuples(KEYS, VALUE_TEXT), min_size=1, max_size=3))
def test_any_set_override_loads_or_is_a_config_error(pairs):
    cfg = works_or_user_error(load_config, None, [f"{k}={v}" for k, v in pairs])
    if cfg is None:
        return
    for section in (cfg.data, cfg.model, cfg.train):  # NaN would pass every range check
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            assert not isinstance(value, float) or math.isfinite(value), (f.name, value)
    # what was accepted is saved as the run's config.yaml and read back on --resume/evaluate
    saved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    assert yaml.safe_dump(config_from_dict(yaml.safe_load(saved)).to_dict(),
                          sort_keys=False) == saved


@pytest.mark.parametrize("text", ["train.learning_rate=.nan", "data.val=.nan",
                                  "train.weight_decay=.inf", "model.dropout=.NaN",
                                  "train.label_smoothing=.nan", "data.val=[x",
                                  "name=a: b: c", "data.augment={? [1, 2] : x}"])
def test_non_finite_numbers_and_broken_yaml_are_config_errors(text):
    """Found by the property above: NaN passed every range check, broken YAML escaped."""
    from multimodal.errors import ConfigError

    with pytest.raises(ConfigError):
        load_config(None, [text])


def test_defaults_are_expanded_like_the_files_values():
    """Found by the round trip above: without a config file (or one omitting data.options)
    the default root stayed `${MULTIMODAL_SAMPLE}`, a path no loader expands."""
    from multimodal.config import SAMPLE_DIR

    assert load_config(None).data.options == {"root": SAMPLE_DIR}
    assert load_config(None, ["data.batch_size=8"]).data.options == {"root": SAMPLE_DIR}


CONFIG_TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.tuples(st.sampled_from(["data", "model", "train", "smoke", "name", "x", "- a"]),
                       VALUE_TEXT), max_size=3)
    .map(lambda items: "\n".join(f"{k}: {v}" for k, v in items)),
    st.lists(st.tuples(KEYS, VALUE_TEXT), max_size=3)
    .map(lambda items: "smoke:\n" + "\n".join(f"  {k or 'k'}: {v}" for k, v in items)))


@PROPERTY
@given(CONFIG_TEXT, st.booleans(), st.sampled_from(["utf-8", "latin-1"]))
def test_any_config_file_loads_or_is_a_config_error(tmp_path, text, smoke, encoding):
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode(encoding, errors="replace"))
    cfg = works_or_user_error(load_config, str(path), smoke=smoke)
    assert cfg is None or isinstance(cfg, Config)


# -- metadata encoder -------------------------------------------------------------------

KINDS = {"age": "numeric", "sex": "categorical", "fitz": "ordinal", "age_bins": "binned"}
CELL = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 300),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["", " ", "unknown", "NaN", "inf", "-inf", "1e400", "35", " 40 ", "male",
                     "IV", "3", "1e308", "-1e308", "0x1A", "None"]),
    st.just(float("nan")), st.just(pd.NA), st.just(np.float32("nan")), st.just(np.int64(7)),
    st.lists(st.integers(), max_size=2), st.just({"a": 1}), st.just(b"12"), st.just(1 + 2j))


def _fitted(frame=None) -> MetadataEncoder:
    frame = frame if frame is not None else pd.DataFrame({
        "age": [30.0, 45.0, None, 70.0, 55.0], "sex": ["male", "female", "unknown", "male", ""],
        "fitz": [1, 2, 3, None, 6], "age_bins": [20, 40, 60, 80, None]})
    return MetadataEncoder(KINDS).fit(frame)


def _frames(min_rows=0):
    columns = st.lists(st.sampled_from([*KINDS, "other"]), unique=True, max_size=5)
    return columns.flatmap(lambda cols: st.integers(min_rows, 4).flatmap(
        lambda n: st.fixed_dictionaries({c: st.lists(CELL, min_size=n, max_size=n) for c in cols})
        .map(lambda data, n=n: pd.DataFrame(data, index=range(n), dtype=object))))


def _check_encoded(encoder, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' complex-to-real warning is not the point
        out = works_or_user_error(encoder.transform, frame)
    if out is not None:
        assert out.shape == (len(frame), encoder.dim) and out.dtype == np.float32
        assert np.isfinite(out).all(), (frame.to_dict("list"), out)


@PROPERTY
@given(_frames())
def test_metadata_encoder_encodes_any_cells_or_says_why(frame):
    _check_encoded(_fitted(), frame)


@PROPERTY
@given(_frames(min_rows=1), _frames())
def test_metadata_encoder_fits_any_cells_or_says_why(train, frame):
    train = train.reindex(columns=list(KINDS))  # fit needs the columns; their cells are free
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = works_or_user_error(_fitted, train)
    if encoder is not None:
        _check_encoded(encoder, frame)
        assert MetadataEncoder.from_dict(encoder.to_dict()).dim == encoder.dim


def test_metadata_infinities_are_missing_and_overflows_refused():
    """Found by the properties above: "inf" or 10**400 encoded as inf (fitting already took
    them for missing), and an int beyond float range crashed pandas."""
    from multimodal.errors import DataError

    encoder = _fitted()
    out = encoder.transform(pd.DataFrame({"age": [float("inf"), "1e400", 10 ** 400, 50]},
                                         dtype=object))
    assert np.isfinite(out).all() and out[:3, encoder.feature_names.index("age_missing")].all()
    with pytest.raises(DataError, match="'fitz': 1e\\+300 is too large"):
        encoder.transform(pd.DataFrame({"fitz": [1e300]}))
    with pytest.raises(DataError, match="'age': values too large"):
        _fitted(pd.DataFrame({c: [1e308, 1e308] for c in KINDS}))


# -- split files ------------------------------------------------------------------------

IDS = ["img0", "img1", "img2", "img3", "img4", "img5"]


@pytest.fixture(scope="module")
def tiny_table():
    frame = pd.DataFrame({"image_id": IDS, "group_id": ["g0", "g0", "g1", "g2", "g3", "g4"],
                          "label": ["a", "b"] * 3, "image_path": [f"/x/{i}.jpg" for i in IDS],
                          "source": "tiny"})
    return DatasetTable(frame, ("a", "b"), {}, "tiny")


CSV_CELL = st.one_of(st.sampled_from(IDS), st.sampled_from(
    ["train", "val", "test", "Train", "", "0", "1", "2", "3", "-1", "1.0", "1.5", "1e20", "inf",
     "nan", "NaN", "99999999999", '"a,b"', '"', "img9", " img0", "\\N", "#"]),
    st.text(st.sampled_from("ab01,;\"'\n\r\t .-é\x00"), max_size=5))
CSV_HEADER = st.one_of(
    st.sampled_from([["image_id", "split"], ["image_id", "fold"], ["image_id", "group_id", "fold"]]),
    st.lists(st.sampled_from(["image_id", "split", "fold", "group_id", "label", "x", ""]),
             max_size=4))


@st.composite
def csv_text(draw):
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    header = draw(CSV_HEADER)
    rows = draw(st.lists(st.lists(CSV_CELL, min_size=0, max_size=len(header) + 1), max_size=7))
    return "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n"]))


@PROPERTY
@given(csv_text(), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_any_split_file_loads_or_is_a_data_error(tmp_path, tiny_table, text, encoding):
    path = tmp_path / "split.csv"
    path.write_bytes(text.encode(encoding, errors="replace"))
    split = works_or_user_error(load_split, str(path), tiny_table)
    if split is not None:
        assert set(split["image_id"]) <= set(IDS) and split["image_id"].is_unique
        if "fold" in split.columns:
            assert sorted(split["fold"].unique()) == list(range(split["fold"].max() + 1))


def test_split_file_fold_numbers_beyond_its_rows_are_refused(tmp_path, tiny_table):
    """Found by the property above: a fold of 10^12 built a set of 10^12 numbers (out of
    memory), an empty image_id crashed sorting, a header-only file with folds had no K."""
    from multimodal.errors import DataError

    path = tmp_path / "split.csv"
    path.write_text("image_id,fold\nimg0,0\nimg1,1000000000000\n")  # no set of 10^12 folds
    with pytest.raises(DataError, match="line 3: fold '1000000000000' is not an integer"):
        load_split(str(path), tiny_table)
    path.write_text("image_id,fold\n")  # a fold column without rows: no K at all
    with pytest.raises(DataError, match="no rows below the header"):
        load_split(str(path), tiny_table)
    path.write_text("image_id,split\n,train\n")
    with pytest.raises(DataError, match="line 2: a row without an image_id"):
        load_split(str(path), tiny_table)


# -- image decoding ---------------------------------------------------------------------

def _picture(fmt: str) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


PICTURES = {fmt: _picture(fmt) for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")}


@st.composite
def image_bytes(draw):
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "prefix"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    data = PICTURES[draw(st.sampled_from(sorted(PICTURES)))]
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data)))]
    if kind == "prefix":  # a real header, then garbage
        return data[:draw(st.integers(1, 40))] + draw(st.binary(max_size=100))
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


@PROPERTY
@given(image_bytes(), st.sampled_from(["crop", "squash", "pad"]))
def test_image_files_decode_or_are_a_data_error(tmp_path, data, geometry):
    path = tmp_path / "picture.jpg"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings on odd files are not failures
        encoded = works_or_user_error(encode_image, str(path), 16, "png", geometry=geometry)
    if encoded is not None:
        with Image.open(io.BytesIO(encoded)) as im:
            assert im.size[0] == 16 or im.size[1] == 16
