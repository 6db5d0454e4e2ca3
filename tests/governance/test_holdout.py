"""Reading holdout files: columns by name or by position, and every refusal names the first problem."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from governance.errors import HoldoutError, NotEvaluable
from governance.holdout import read_holdout
from tests.factories import publish_text_classifier, publish_two_input
from tests.governance.conftest import IRIS_NAMES, export, holdout_csv, write_csv

NAMED = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def iris_named(store, iris):
    """An iris classifier whose reference statistics name its features."""
    x_train, y_train, x_hold, y_hold = iris
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    return export(store, model, "iris", x_hold, labels=IRIS_NAMES, feature_names=NAMED), x_hold, y_hold


def test_named_columns_in_any_order_feed_the_model_in_its_order(iris_named, tmp_path):
    metadata, x, y = iris_named
    shuffled = [3, 0, 2, 1]
    path = holdout_csv(tmp_path / "h.csv", x[:, shuffled], np.array(IRIS_NAMES)[y],
                       names=[NAMED[i] for i in shuffled], label="species", extra={"site": ["a", "b"] * 37 + ["a"]})

    holdout = read_holdout(path, "species", "site", metadata)

    np.testing.assert_array_equal(holdout.features["input"], x.astype(np.float32))
    assert holdout.rows == len(x) and list(holdout.labels[:2]) == ["setosa", "setosa"]
    assert list(holdout.groups[:3]) == ["a", "b", "a"]
    assert holdout.columns == [*(NAMED[i] for i in shuffled), "species", "site"]
    assert len(holdout.sha256) == 64


def test_unnamed_features_are_taken_by_position_across_inputs(store, tmp_path):
    publish_two_input(store)  # a: float32[batch, 2], b: int64[batch, 2]; a transform, so only the feeds are read
    metadata = store.read_metadata("pair", "v1.0.0").model_copy(update={"task": "regression"})
    path = write_csv(tmp_path / "h.csv", ["p", "q", "r", "s", "target"], [[0.5, 1.5, 2, 3, 1.0], [1, 2, 4, 5, 2.0]])

    holdout = read_holdout(path, "target", None, metadata)

    np.testing.assert_array_equal(holdout.features["a"], np.array([[0.5, 1.5], [1, 2]], dtype=np.float32))
    np.testing.assert_array_equal(holdout.features["b"], np.array([[2, 3], [4, 5]], dtype=np.int64))
    assert holdout.labels.dtype == np.float64 and list(holdout.labels) == [1.0, 2.0]


def _iris_rows(x, y, count=3):
    return [[*row, IRIS_NAMES[label]] for row, label in zip(x[:count], y[:count], strict=True)]


def test_a_column_the_model_does_not_have_is_named(iris_named, tmp_path):
    metadata, x, y = iris_named
    path = write_csv(tmp_path / "h.csv", ["sepal_length", "sepal_width", "petal_length", "petal_wdth", "species"],
                     _iris_rows(x, y))
    with pytest.raises(HoldoutError, match="no column 'petal_width'"):
        read_holdout(path, "species", None, metadata)
    extra = write_csv(tmp_path / "extra.csv", [*NAMED, "colour", "species"], [[*r[:4], "red", r[4]] for r in _iris_rows(x, y)])
    with pytest.raises(HoldoutError, match="column 'colour' is not a feature"):
        read_holdout(extra, "species", None, metadata)


def test_a_positional_holdout_with_too_few_or_too_many_columns_is_refused(store, tmp_path, diabetes):
    x_train, y_train, x_hold, y_hold = diabetes
    metadata = export(store, Ridge().fit(x_train, y_train), "ridge", x_hold)  # features f0..f9
    short = holdout_csv(tmp_path / "short.csv", x_hold[:, :9], y_hold, names=[f"c{i}" for i in range(9)])
    with pytest.raises(HoldoutError, match=r"9 feature columns, the model takes 10; none for value 9 of input 'input'"):
        read_holdout(short, "y", None, metadata)
    wide = holdout_csv(tmp_path / "wide.csv", np.hstack([x_hold, x_hold[:, :1]]), y_hold, names=[f"c{i}" for i in range(11)])
    with pytest.raises(HoldoutError, match="column 'c10' is feature column 11, but the model takes 10"):
        read_holdout(wide, "y", None, metadata)


def test_missing_label_column(iris_named, tmp_path):
    metadata, x, y = iris_named
    path = write_csv(tmp_path / "h.csv", [*NAMED, "species"], _iris_rows(x, y))
    with pytest.raises(HoldoutError, match="no label column 'class'"):
        read_holdout(path, "class", None, metadata)
    with pytest.raises(HoldoutError, match="no group column 'site'"):
        read_holdout(path, "species", "site", metadata)


def test_a_label_the_model_does_not_know_is_named(iris_named, tmp_path):
    metadata, x, y = iris_named
    rows = _iris_rows(x, y)
    rows[2][4] = "daisy"
    path = write_csv(tmp_path / "h.csv", [*NAMED, "species"], rows)
    with pytest.raises(HoldoutError, match=r"label 'daisy' \(row 3\) is not a class of iris v1.0.0"):
        read_holdout(path, "species", None, metadata)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"\n\n", "is empty"),
    (b"sepal_length,sepal_width,petal_length,petal_width,species\n", "has a header but no rows"),
])
def test_an_empty_file_is_refused(iris_named, tmp_path, content, message):
    path = tmp_path / "h.csv"
    path.write_bytes(content)
    with pytest.raises(HoldoutError, match=message):
        read_holdout(path, "species", None, iris_named[0])


@pytest.mark.parametrize(("value", "why"), [("abc", "is not a number"), ("", "is not a number"),
                                             ("inf", "is not a finite number")])
def test_a_non_numeric_value_is_named_by_row_and_column(iris_named, tmp_path, value, why):
    metadata, x, y = iris_named
    rows = _iris_rows(x, y, 5)
    rows[3][2] = value
    path = write_csv(tmp_path / "h.csv", [*NAMED, "species"], rows)
    with pytest.raises(HoldoutError, match=rf"line 5 \(row 4\), column 'petal_length': '{value}' {why}"):
        read_holdout(path, "species", None, metadata)


def test_ragged_rows_and_duplicate_columns_are_refused(iris_named, tmp_path):
    metadata, x, y = iris_named
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",".join([*NAMED, "species"]) + "\n1,2,3,4,setosa\n1,2,3,setosa\n")
    with pytest.raises(HoldoutError, match="line 3 has 4 values; the header has 5"):
        read_holdout(ragged, "species", None, metadata)
    twice = write_csv(tmp_path / "twice.csv", [*NAMED, "species", "species"], [[1, 2, 3, 4, "setosa", "setosa"]])
    with pytest.raises(HoldoutError, match="column 'species' appears twice"):
        read_holdout(twice, "species", None, metadata)


def test_a_text_model_is_refused_with_the_reason(store, tmp_path):
    publish_text_classifier(store)
    path = write_csv(tmp_path / "h.csv", ["text", "label"], [["good movie", "positive"]])
    with pytest.raises(NotEvaluable, match=r"takes text; .*\(text models are not supported yet\)"):
        read_holdout(path, "label", None, store.read_metadata("sentiment", "v1.0.0"))
