import numpy as np
import pandas as pd
import pytest

from multimodal.data.metadata import MetadataEncoder
from multimodal.errors import DataError

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
