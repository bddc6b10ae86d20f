import numpy as np
import pandas as pd
import pytest

from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.config import load_config
from multimodal.errors import ConfigError, DataError

COLUMNS = {"age": "numeric", "sex": "categorical", "fitzpatrick": "ordinal"}


def _frame():
    return pd.DataFrame({"age": [20.0, 40.0, np.nan, 60.0], "sex": ["male", "female", "unknown", "male"],
                         "fitzpatrick": [1.0, np.nan, 6.0, 3.0]})


def test_encoding_layout_and_values():
    enc = MetadataEncoder(COLUMNS).fit(_frame())
    assert enc.feature_names == ["age", "age_missing", "sex=female", "sex=male", "sex=unknown",
                                 "fitzpatrick", "fitzpatrick_missing"]
    x = enc.transform(_frame())
    assert x.dtype == np.float32 and x.shape == (4, enc.dim)
    # age standardised over the 3 observed values, missing -> 0 with indicator
    np.testing.assert_allclose(x[[0, 1, 3], 0], (np.array([20, 40, 60]) - 40) / np.std([20, 40, 60]),
                               rtol=1e-6)
    assert x[2, 0] == 0 and x[2, 1] == 1 and x[:, 1].sum() == 1
    np.testing.assert_array_equal(x[:, 2:5], [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_allclose(x[:, 5], [0, 0, 1, 0.4])
    np.testing.assert_array_equal(x[:, 6], [0, 1, 0, 0])


def test_unseen_and_blank_categories_go_to_unknown():
    enc = MetadataEncoder({"sex": "categorical"}).fit(_frame())
    x = enc.transform(pd.DataFrame({"sex": ["other", "", None, "female"]}))
    np.testing.assert_array_equal(x, [[0, 0, 1], [0, 0, 1], [0, 0, 1], [1, 0, 0]])


def test_fitted_on_training_rows_only():
    train = _frame().iloc[:2]
    enc = MetadataEncoder({"age": "numeric"}).fit(train)
    assert enc.stats["age"] == {"mean": 30.0, "std": 10.0}
    np.testing.assert_allclose(enc.transform(pd.DataFrame({"age": [60.0]}))[0, 0], 3.0)


def test_json_round_trip_gives_identical_encoding(tmp_path):
    enc = MetadataEncoder(COLUMNS).fit(_frame())
    enc.save(tmp_path / "enc.json")
    again = MetadataEncoder.load(tmp_path / "enc.json")
    np.testing.assert_array_equal(enc.transform(_frame()), again.transform(_frame()))
    assert again.feature_names == enc.feature_names


def test_absent_column_at_prediction_is_missing():
    enc = MetadataEncoder(COLUMNS).fit(_frame())
    x = enc.transform(pd.DataFrame({"sex": ["male"]}))
    assert x[0, 1] == 1 and x[0, 6] == 1  # age and fitzpatrick flagged missing


def test_errors():
    with pytest.raises(ValueError, match="kind 'text'"):
        MetadataEncoder({"a": "text"})
    with pytest.raises(RuntimeError, match="not fitted"):
        MetadataEncoder({"age": "numeric"}).transform(_frame())
    with pytest.raises(DataError, match="'weight'"):
        MetadataEncoder({"weight": "numeric"}).fit(_frame())
    with pytest.raises(ValueError, match="not a metadata encoder"):
        MetadataEncoder.from_dict({"format": "x"})


def test_binned_age_is_one_hot_over_training_quantiles_with_a_missing_bucket():
    train = pd.DataFrame({"age": [float(a) for a in range(5, 90, 5)] + [np.nan]})
    enc = MetadataEncoder({"age": "binned"}).fit(train)
    edges = enc.stats["age"]["edges"]
    assert len(edges) == 7 and len(set(edges)) == 7 and 5 < edges[0] < edges[-1] < 85
    assert enc.dim == len(edges) + 2 and enc.feature_names[-1] == "age_missing"
    assert all(n.replace("_", "").isalnum() for n in enc.feature_names)  # XGBoost-safe names
    x = enc.transform(pd.DataFrame({"age": [0.0, 45.0, 200.0, np.nan, "unknown", "inf"]}))
    assert np.array_equal(x.sum(1), np.ones(6))  # exactly one bucket each
    assert x[0, 0] == 1 and x[2, len(edges)] == 1  # below / above every edge
    assert x[3, -1] == 1 and x[4, -1] == 1 and x[5, -1] == 1  # missing, "inf" too
    # ages in order fall in buckets in order
    ages = np.linspace(0, 100, 50)
    buckets = enc.transform(pd.DataFrame({"age": ages})).argmax(1)
    assert np.all(np.diff(buckets) >= 0)
    again = MetadataEncoder.from_dict(enc.to_dict())
    assert np.array_equal(again.transform(pd.DataFrame({"age": ages})),
                          enc.transform(pd.DataFrame({"age": ages})))


def test_binned_ties_merge_and_only_numbers_can_be_binned():
    enc = MetadataEncoder({"age": "binned"}).fit(pd.DataFrame({"age": [50.0] * 10}))
    assert enc.stats["age"]["edges"] == [50.0]
    declared = {"age": "numeric", "sex": "categorical"}
    assert MetadataEncoder.kinds(declared, {"age": "binned"}) == {"age": "binned",
                                                                  "sex": "categorical"}
    assert MetadataEncoder.kinds(declared, None) == declared
    with pytest.raises(ConfigError, match="only numeric or ordinal"):
        MetadataEncoder.kinds(declared, {"sex": "binned"})
    with pytest.raises(ConfigError, match="not a metadata column"):
        MetadataEncoder.kinds(declared, {"weight": "binned"})
    infinite = MetadataEncoder({"age": "binned"}).fit(pd.DataFrame({"age": [1.0, 2.0] + [np.inf] * 6}))
    assert all(np.isfinite(infinite.stats["age"]["edges"]))


def test_metadata_encoding_is_checked_when_the_config_loads():
    cfg = load_config(None, ["data.metadata_encoding={age: binned}"])
    assert cfg.data.metadata_encoding == {"age": "binned"}
    with pytest.raises(ConfigError, match="unknown encoding 'bined'"):
        load_config(None, ["data.metadata_encoding={age: bined}"])
