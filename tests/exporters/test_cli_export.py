from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelstore.layout import Store
from onnxgate.__main__ import main


@pytest.fixture
def artefacts(tmp_path, iris):
    x_train, y_train, held_out = iris
    joblib.dump(LogisticRegression(max_iter=500).fit(x_train, y_train), tmp_path / "model.joblib")
    np.save(tmp_path / "sample.npy", held_out)
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.95}))
    return tmp_path


def export_args(artefacts, *extra: str) -> list[str]:
    return ["export", str(artefacts / "model.joblib"), "--name", "iris", "--version", "v1.0.0",
            "--store", str(artefacts / "store"), "--no-check-node", *extra]


def test_cli_exports_and_prints_json(artefacts, capsys):
    code = main(export_args(artefacts, "--metrics", str(artefacts / "metrics.json"), "--sample",
                            str(artefacts / "sample.npy"), "--labels", "setosa,versicolor,virginica",
                            "--training-samples", "75", "--json", "--reason", "test"))

    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["parity"]["passed"] and printed["name"] == "iris"
    metadata = Store(artefacts / "store").read_metadata("iris", "v1.0.0")
    assert metadata.metrics == {"accuracy": 0.95} and metadata.training_samples == 75
    assert metadata.labels == ["setosa", "versicolor", "virginica"]


def test_cli_refuses_a_duplicate_version(artefacts, capsys):
    assert main(export_args(artefacts)) == 0
    assert main(export_args(artefacts)) == 4
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"accuracy": "high"}'])
def test_cli_bad_metrics_file_is_a_usage_error(artefacts, capsys, content):
    (artefacts / "bad.json").write_text(content)
    assert main(export_args(artefacts, "--metrics", str(artefacts / "bad.json"))) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--metrics" in error


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_cli_refuses_non_finite_metrics(artefacts, capsys, value):
    (artefacts / "nan.json").write_text(f'{{"accuracy": {value}}}')  # Python's json reads these; JSON has none
    assert main(export_args(artefacts, "--metrics", str(artefacts / "nan.json"))) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "metric 'accuracy'" in error and "finite" in error
    assert not (artefacts / "store" / "iris").exists()


@pytest.mark.parametrize(("name", "version"), [("iris\n", "v1.0.0"), ("iris", "v1.0.0\n"),
                                               ("iris", "v1.0.0-" + "a" * 300), ("i" * 300, "v1.0.0")])
def test_cli_refuses_bad_and_over_long_names_in_one_line(artefacts, capsys, name, version):
    args = export_args(artefacts)
    args[args.index("--name") + 1], args[args.index("--version") + 1] = name, version
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "invalid" in error and len(error) < 400
    assert not (artefacts / "store").exists() or not any((artefacts / "store").iterdir())


def test_cli_missing_files_are_usage_errors(artefacts, capsys):
    assert main(export_args(artefacts, "--sample", str(artefacts / "nope.npy"))) == 2
    assert main(["export", str(artefacts / "missing.joblib"), "--name", "x", "--version", "v1.0.0",
                 "--store", str(artefacts / "store")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_warns_that_pickles_run_code(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "executes code" in capsys.readouterr().out
