"""`export --reference-data`: the statistics describe the training rows (CSV or .npy), with 101 quantiles whose KS is
within 0.02 of scipy's, and the ONNX model's own answers on those rows as the prediction reference."""
from __future__ import annotations

import csv
import json

import joblib
import numpy as np
import pytest
from scipy.stats import ks_2samp
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelstore.layout import Store
from monitoring.drift import DriftLayout, DriftThresholds, drift_report
from onnxgate.__main__ import main
from tests.exporters.conftest import run_stored


def export_args(root, *extra: str) -> list[str]:
    return ["export", str(root / "model.joblib"), "--name", "m", "--version", "v1.0.0", "--store",
            str(root / "store"), "--no-check-node", *extra]


@pytest.fixture
def iris_files(tmp_path, iris):
    x_train, y_train, held_out = iris
    joblib.dump(LogisticRegression(max_iter=500).fit(x_train, y_train), tmp_path / "model.joblib")
    np.save(tmp_path / "sample.npy", held_out)
    np.save(tmp_path / "train.npy", x_train)
    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width"])
        writer.writerows(x_train.tolist())
    return tmp_path


def test_npy_reference_rows_and_the_models_class_shares_on_them(iris_files, iris):
    x_train = iris[0]
    assert main(export_args(iris_files, "--sample", str(iris_files / "sample.npy"), "--reference-data",
                            str(iris_files / "train.npy"))) == 0
    store = Store(iris_files / "store")
    stats = store.read_metadata("m", "v1.0.0").reference_stats
    assert stats.available and stats.rows == len(x_train)
    for column, feature in enumerate(stats.features):
        assert len(feature.quantiles) == 101 and len(feature.bin_edges) <= 11 and sum(feature.counts) == len(x_train)
        assert feature.quantiles[0] == x_train[:, column].min() and feature.quantiles[-1] == x_train[:, column].max()
        assert feature.cdf[-1] == 1.0 and feature.non_finite == 0
    labels = run_stored(store, "m", "v1.0.0", {"input": x_train.astype(np.float32)})["label"]
    classes, counts = np.unique(labels, return_counts=True)
    assert stats.prediction.kind == "classes" and stats.prediction.output == "label"
    assert stats.prediction.classes == [str(c) for c in classes] and stats.prediction.counts == counts.tolist()


def test_csv_reference_rows_name_the_features(iris_files, iris):
    assert main(export_args(iris_files, "--reference-data", str(iris_files / "train.csv"))) == 0
    stats = Store(iris_files / "store").read_metadata("m", "v1.0.0").reference_stats
    assert [f.name for f in stats.features] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert stats.rows == len(iris[0]) and stats.prediction is not None  # no --sample: parity rows are synthetic


def test_without_reference_data_the_sample_is_described_as_before(iris_files, iris):
    assert main(export_args(iris_files, "--sample", str(iris_files / "sample.npy"))) == 0
    stats = Store(iris_files / "store").read_metadata("m", "v1.0.0").reference_stats
    assert stats.rows == len(iris[2]) and stats.prediction.rows == len(iris[2])


def test_a_regressor_keeps_quantiles_and_bins_of_its_value(tmp_path, diabetes):
    x_train, y_train, _ = diabetes
    model = LinearRegression().fit(x_train, y_train)
    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "train.npy", x_train)
    assert main(export_args(tmp_path, "--reference-data", str(tmp_path / "train.npy"))) == 0
    stats = Store(tmp_path / "store").read_metadata("m", "v1.0.0").reference_stats
    prediction = stats.prediction
    assert prediction.kind == "values" and prediction.output == "variable" and prediction.rows == len(x_train)
    assert len(prediction.value.quantiles) == 101 and len(prediction.value.counts) == 10
    # the model's predictions on the training rows, not the targets
    np.testing.assert_allclose(prediction.value.quantiles[50], np.median(model.predict(x_train)), rtol=1e-4)


@pytest.mark.parametrize("shift", [0.0, 0.2])
def test_ks_from_the_exported_quantiles_is_within_0_02_of_scipy(tmp_path, shift):
    rng = np.random.default_rng(2)
    x = np.column_stack([rng.normal(size=5000), rng.exponential(size=5000), rng.integers(0, 4, 5000)])
    joblib.dump(LinearRegression().fit(x, x @ [1.0, 2.0, 3.0]), tmp_path / "model.joblib")
    np.save(tmp_path / "train.npy", x)
    assert main(export_args(tmp_path, "--reference-data", str(tmp_path / "train.npy"))) == 0
    layout = DriftLayout.of(Store(tmp_path / "store").read_metadata("m", "v1.0.0"))
    live = np.column_stack([rng.normal(shift, 1, 2000), rng.exponential(1 + shift, 2000), rng.integers(0, 4, 2000)])
    report = drift_report(layout, layout.count_features(live), layout.empty_prediction_counts(), len(live),
                          DriftThresholds(), model="m", version="v1.0.0", environment=None)
    for column, feature in enumerate(report.features):
        assert abs(feature.ks - ks_2samp(x[:, column], live[:, column]).statistic) <= 0.02


def test_reference_data_errors_are_one_line(iris_files, capsys):
    (iris_files / "words.csv").write_text("a,b,c,d\n1,2,x,4\n")
    np.save(iris_files / "narrow.npy", np.zeros((10, 3)))
    (iris_files / "rows.json").write_text(json.dumps([[1, 2, 3, 4]]))
    for path, code, expected in [("missing.npy", 2, "no such file"), ("words.csv", 2, "--reference-data"),
                                 ("rows.json", 2, ".csv (with a header) or .npy"),
                                 ("narrow.npy", 1, "reference rows have 3 features")]:
        assert main(export_args(iris_files, "--reference-data", str(iris_files / path))) == code
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and expected in error, (path, error)
    assert not (iris_files / "store" / "m").exists()
