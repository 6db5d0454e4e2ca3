"""`onnxgate evaluate` as a user runs it: a real process, a real exported model in a real store, a real CSV."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge

from governance.holdout import read_holdout
from governance.predictions import predict
from tests.governance.conftest import CANCER_NAMES, export, holdout_csv

NAMES = [f"x{index}" for index in range(30)]


def onnxgate(store, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxgate", *args, "--store", str(store.root)],
                          capture_output=True, text=True, timeout=300)


def test_evaluate_records_what_json_prints(store, tmp_path, cancer):
    x_train, y_train, x_hold, y_hold = cancer
    model = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    metadata = export(store, model, "cancer", x_hold, labels=CANCER_NAMES, feature_names=NAMES)
    sites = np.where(np.arange(len(x_hold)) % 3 == 0, "north", "south")
    data = holdout_csv(tmp_path / "holdout.csv", x_hold[:, ::-1], np.array(CANCER_NAMES)[y_hold],
                       names=NAMES[::-1], label="diagnosis", extra={"site": sites})

    result = onnxgate(store, "evaluate", "cancer", "v1.0.0", "--data", str(data), "--label", "diagnosis",
                      "--group", "site", "--json", "--actor", "ci")

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    recorded = store.registry.read().state.models["cancer"]["v1.0.0"].evaluation
    assert printed == recorded.model_dump(mode="json")
    assert printed["actor"] == "ci" and printed["rows"] == len(x_hold) and printed["dataset"] == "holdout.csv"
    assert printed["task"] == "classification" and printed["label"] == "diagnosis" and printed["group"] == "site"
    assert printed["dataset_sha256"] == read_holdout(data, "diagnosis", "site", metadata).sha256
    # the figures are scikit-learn's on the ONNX model's predictions, measured here independently
    holdout = read_holdout(data, "diagnosis", "site", metadata)
    predictions = predict(store, "cancer", "v1.0.0", holdout.features)
    metrics = printed["metrics"]
    assert metrics["accuracy"] == skm.accuracy_score(holdout.labels, predictions.labels)
    assert metrics["f1"] == skm.f1_score(holdout.labels, predictions.labels, pos_label="benign")
    assert metrics["roc_auc"] == skm.roc_auc_score(holdout.labels == "benign", predictions.scores[:, 1])
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece",
                            "noise_sensitivity", "fairness_delta"}
    north = holdout.groups == "north"
    assert printed["groups"]["north"]["accuracy"] == skm.accuracy_score(holdout.labels[north], predictions.labels[north])
    assert metrics["fairness_delta"] == printed["fairness_gaps"]["accuracy"] == abs(
        printed["groups"]["north"]["accuracy"] - printed["groups"]["south"]["accuracy"])
    assert printed["parameters"]["averaging"] == "binary (positive class 'benign')"
    assert printed["parameters"]["noise_scale"] == 0.05 and printed["parameters"]["seed"] == 0
    assert printed["parameters"]["model_sha256"] == metadata.model_sha256
    entry = store.registry.audit.entries()[-1]
    assert (entry["action"], entry["actor"], entry["model"], entry["after"]) == ("evaluate", "ci", "cancer", "v1.0.0")
    assert entry["details"] == printed
    # measured again with the same seed: the same figures
    again = onnxgate(store, "evaluate", "cancer", "v1.0.0", "--data", str(data), "--label", "diagnosis",
                     "--group", "site", "--json")
    assert json.loads(again.stdout)["metrics"] == metrics


def test_regressor_latest_and_the_table(store, tmp_path, diabetes):
    x_train, y_train, x_hold, y_hold = diabetes
    export(store, Ridge().fit(x_train, y_train), "ridge", x_hold)
    data = holdout_csv(tmp_path / "holdout.csv", x_hold, y_hold, label="progression")

    result = onnxgate(store, "evaluate", "ridge", "latest", "--data", str(data), "--label", "progression")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ridge v1.0.0 on holdout.csv (221 rows")
    assert "rmse" in result.stdout and "noise_sensitivity" in result.stdout
    recorded = store.registry.read().state.models["ridge"]["v1.0.0"].evaluation
    assert recorded.task == "regression" and set(recorded.metrics) == {"rmse", "mae", "r2", "noise_sensitivity"}
    assert f"{recorded.metrics['rmse']:.4f}" in result.stdout


def test_refusals_are_one_line_with_exit_code_2_and_record_nothing(store, tmp_path, cancer):
    x_train, y_train, x_hold, y_hold = cancer
    export(store, LogisticRegression(max_iter=5000).fit(x_train, y_train), "cancer", x_hold, labels=CANCER_NAMES,
           feature_names=NAMES)
    truth = np.array(CANCER_NAMES)[y_hold]
    wrong = holdout_csv(tmp_path / "wrong.csv", x_hold, truth, names=[*NAMES[:29], "x29b"], label="diagnosis")
    unknown = holdout_csv(tmp_path / "unknown.csv", x_hold, np.where(np.arange(len(truth)) == 4, "benign?", truth),
                          names=NAMES, label="diagnosis")
    cases = [
        ([str(wrong), "diagnosis"], "no column 'x29'"),
        ([str(unknown), "diagnosis"], "label 'benign?' (row 5) is not a class of cancer v1.0.0"),
        ([str(unknown), "outcome"], "holdout has no label column 'outcome'"),
        ([str(tmp_path / "absent.csv"), "diagnosis"], "cannot read holdout"),
    ]
    for (data, label), message in cases:
        result = onnxgate(store, "evaluate", "cancer", "v1.0.0", "--data", data, "--label", label)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert onnxgate(store, "evaluate", "nope", "v1.0.0", "--data", str(wrong), "--label", "y").returncode == 3
    assert onnxgate(store, "evaluate", "cancer", "v1.0.0", "--data", str(wrong), "--label", "diagnosis",
                    "--noise-scale", "-1").returncode == 2
    assert store.registry.read().state.models["cancer"]["v1.0.0"].evaluation is None


def test_without_the_govern_extra_the_cli_still_starts_and_evaluate_says_what_to_install(monkeypatch, capsys, store):
    from onnxgate.__main__ import main

    for module in [name for name in sys.modules if name == "governance" or name.startswith(("governance.", "sklearn"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails, as when it is not installed

    assert main(["evaluate", "cancer", "v1.0.0", "--data", "h.csv", "--label", "y", "--store", str(store.root)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("onnxgate evaluate: error: evaluate needs the govern extra (sklearn is not installed): "
                     "pip install 'onnxgate[govern]'")
    assert main(["show", "nope", "--store", str(store.root)]) == 3  # the rest of the CLI works without it
