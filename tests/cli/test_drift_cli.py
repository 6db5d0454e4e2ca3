"""`onnxgate drift` on a real exported scikit-learn model: fresh rows do not drift, shifted ones do (exit 10), too few
rows are insufficient data, an old-format version still reports, bad input is one line. Over the file store and the
shared backends (the registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket), but for the
tests that copy or edit the store's files by hand."""
from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import LogisticRegression

from governance.offline_drift import drift_from_file
from modelstore.layout import Store
from modelstore.metadata import metadata_json, parse_metadata
from monitoring.drift import DriftLayout, DriftThresholds, drift_report
from onnxgate.__main__ import main
from tests.factories import BACKENDS, backend_store, deploy_version, store_flags

FEATURES = ["age", "income", "tenure", "score", "visits"]


def training_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([rng.normal(40, 10, n), rng.lognormal(10, 0.5, n), rng.integers(0, 20, n),
                            rng.normal(0, 1, n), rng.poisson(3, n)])


def write_csv(path: Path, rows: np.ndarray, header: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows.tolist())
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    """(store, directory of data files): `churn` v1.0.0 exported through the CLI with --reference-data."""
    root = tmp_path_factory.mktemp(f"drift-{request.param}")
    with backend_store(request.param, root / "store", request) as store:
        export_churn(root, store)
        yield store, root


def export_churn(root: Path, store: Store) -> None:
    rng = np.random.default_rng(0)
    x = training_rows(rng, 4000)
    y = (x[:, 3] + (x[:, 0] - 40) / 10 > 0).astype(int)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), root / "model.joblib")
    np.save(root / "sample.npy", x[:100])
    write_csv(root / "train.csv", x, FEATURES)
    fresh = training_rows(rng, 2000)
    np.save(root / "fresh.npy", fresh)
    shifted = training_rows(rng, 2000)
    shifted[:, 0] += 15  # age and score shift: 2 of 5 features (40% >= 30%)
    shifted[:, 3] += 1.5
    write_csv(root / "shifted.csv", shifted[:, [4, 3, 2, 1, 0]], FEATURES[::-1])  # named columns, any order
    write_csv(root / "few.csv", shifted[:100], FEATURES)
    assert main(["export", str(root / "model.joblib"), "--name", "churn", "--version", "v1.0.0", *store_flags(store),
                 "--sample", str(root / "sample.npy"), "--reference-data", str(root / "train.csv"),
                 "--no-check-node"]) == 0


def drift(store: Store | Path, *args: str) -> list[str]:
    return ["drift", "churn", *args, *store_flags(store if isinstance(store, Store) else Store(store))]


def file_store_only(store: Store, why: str) -> None:
    if store.registry_backend is not None:
        pytest.skip(f"{why}: the file store only")


def test_fresh_rows_from_the_training_distribution_do_not_drift(exported, capsys):
    store, data = exported
    capsys.readouterr()
    assert main(drift(store, "--data", str(data / "fresh.npy"), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "ok" and report["drifted_share"] == 0.0 and report["window_rows"] == 2000
    assert [f["name"] for f in report["features"]] == FEATURES
    assert report["prediction"]["available"] and not report["prediction"]["drifted"]
    assert report["notes"] == []


def test_shifted_features_drift_with_exit_code_10(exported, capsys):
    store, data = exported
    capsys.readouterr()
    assert main(drift(store, "v1.0.0", "--data", str(data / "shifted.csv"), "--json")) == 10
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["status"] == "drift" and report["drifted_share"] == pytest.approx(0.4)
    assert [f["name"] for f in report["features"] if f["drifted"]] == ["age", "score"]
    assert report["prediction"]["drifted"]  # the shift moves the predicted classes too
    assert captured.err.count("\n") == 1 and "40% of the features drifted" in captured.err


def test_human_output_and_a_stricter_threshold(exported, capsys):
    store, data = exported
    capsys.readouterr()
    assert main(drift(store, "--data", str(data / "fresh.npy"), "--ks", "0.001")) == 10
    out = capsys.readouterr().out
    assert "churn v1.0.0: drift (2000 rows" in out and "income" in out and "predictions (classes of label" in out


def test_too_few_rows_are_insufficient_data_and_exit_0(exported, capsys):
    store, data = exported
    capsys.readouterr()
    assert main(drift(store, "--data", str(data / "few.csv"), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "insufficient data" and report["drifted_share"] is None
    assert not any(f["drifted"] for f in report["features"])


def test_the_environment_picks_the_deployed_version(exported, capsys, tmp_path):
    store, data = exported
    file_store_only(store, "deploys in a copy of the store's directory (the module's store stays undeployed)")
    copy = tmp_path / "store"
    shutil.copytree(store.root, copy, symlinks=True)
    assert main(drift(copy, "--env", "staging", "--data", str(data / "fresh.npy"))) == 3
    assert "not deployed to staging" in capsys.readouterr().err
    deploy_version(Store(copy), "churn", "v1.0.0", "staging")
    assert main(drift(copy, "--env", "staging", "--data", str(data / "fresh.npy"), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["environment"] == "staging" and report["version"] == "v1.0.0"


def test_the_report_is_the_one_drift_report_gives_on_the_same_counts(exported):
    store, data = exported
    rows = np.load(data / "fresh.npy")
    offline = drift_from_file(store, "churn", "v1.0.0", data / "fresh.npy", DriftThresholds())
    metadata = store.read_metadata("churn", "v1.0.0")
    layout = DriftLayout.of(metadata)
    feeds = {"input": rows.astype(np.float32)}
    counts = sum((layout.count_features(layout.feature_table({"input": feeds["input"][i:i + 10]}))
                  for i in range(0, len(rows), 10)), layout.empty_feature_counts())
    session = ort.InferenceSession(str(store.model_path("churn", "v1.0.0")), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
    online = drift_report(layout, counts, layout.count_predictions(outputs), len(rows), DriftThresholds(),
                          model="churn", version="v1.0.0", environment=None)
    assert online == offline


def test_an_old_format_version_reports_from_its_10_bins(exported, capsys, tmp_path):
    store, data = exported
    file_store_only(store, "rewrites a copy of the version's metadata.json by hand")
    copy = tmp_path / "store"
    shutil.copytree(store.root, copy, symlinks=True)
    path = Store(copy).metadata_path("churn", "v1.0.0")
    payload = json.loads(path.read_text())
    stats = payload["reference_stats"]
    del stats["prediction"]
    for feature in stats["features"]:
        for key in ("quantiles", "cdf", "cdf_below", "non_finite"):
            del feature[key]
    old = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    path.write_text(old)
    assert metadata_json(parse_metadata(old.encode(), "old")) == old  # loads, and writes back byte for byte
    assert main(drift(copy, "--data", str(data / "shifted.csv"), "--json")) == 10
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "drift" and "10 bins" in report["notes"][0]
    assert not report["prediction"]["available"] and "no reference distribution" in report["prediction"]["reason"]
    assert main(drift(copy, "--data", str(data / "fresh.npy"), "--json")) == 0


@pytest.mark.parametrize(("content", "expected"), [
    ("age,income,tenure,score\n1,2,3,4\n", "no column 'visits'"),
    ("age,income,tenure,score,visits\n1,2,x,4,5\n", "'x' is not a number"),
    ("", "empty"),
])
def test_bad_files_are_one_line_errors(exported, capsys, tmp_path, content, expected):
    store, _ = exported
    (tmp_path / "bad.csv").write_text(content)
    assert main(drift(store, "--data", str(tmp_path / "bad.csv"))) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error


def test_wrong_width_npy_missing_file_and_bad_threshold_are_one_line_errors(exported, capsys, tmp_path):
    store, _ = exported
    np.save(tmp_path / "narrow.npy", np.zeros((10, 3)))
    assert main(drift(store, "--data", str(tmp_path / "narrow.npy"))) == 2
    assert "rows have 3 values, the model takes 5" in capsys.readouterr().err
    assert main(drift(store, "--data", str(tmp_path / "missing.npy"))) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "ok.npy", np.zeros((10, 5)))
    assert main(drift(store, "--data", str(tmp_path / "ok.npy"), "--drifted-share", "2")) == 2
    assert "--drifted-share" in capsys.readouterr().err


def test_a_version_without_reference_statistics_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    joblib.dump(LogisticRegression().fit(x, x[:, 0] > 0), tmp_path / "m.joblib")
    assert main(["export", str(tmp_path / "m.joblib"), "--name", "bare", "--version", "v1.0.0", "--store",
                 str(tmp_path / "store"), "--no-check-node"]) == 0
    np.save(tmp_path / "rows.npy", x)
    assert main(["drift", "bare", "--data", str(tmp_path / "rows.npy"), "--store", str(tmp_path / "store")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no reference statistics" in error
