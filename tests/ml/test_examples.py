from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ml.examples import intent_classifier, regressor, tabular_classifier
from modelstore.layout import Store
from modelstore.outputs import format_outputs
from onnxgate.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    paths = {}
    for module, model in ((tabular_classifier, tabular_classifier.train()),
                          (regressor, regressor.train(n_estimators=30)),
                          (intent_classifier, intent_classifier.train(epochs=30))):
        target = out / module.NAME
        target.mkdir()
        paths[module.NAME] = module.save(model, target)
    return paths


def run_store_model(store: Store, name: str, feeds: dict[str, np.ndarray]) -> dict:
    metadata = store.read_metadata(name, "latest")
    session = ort.InferenceSession(str(store.model_path(name, metadata.version)), providers=["CPUExecutionProvider"])
    values = session.run(None, feeds)
    return format_outputs(metadata, {o.name: v for o, v in zip(session.get_outputs(), values, strict=True)})


def test_tabular_classifier_trains_and_exports(trained, tmp_path):
    model_path = trained["cancer_classifier"]
    folder = model_path.parent
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"} and metrics["accuracy"] > 0.9

    assert main(["export", str(model_path), "--name", "cancer_classifier", "--version", "v1.0.0",
                 "--metrics", str(folder / "metrics.json"), "--sample", str(folder / "sample.npy"),
                 "--labels-file", str(folder / "labels.txt"), "--store", str(tmp_path)]) == 0

    store = Store(tmp_path)
    metadata = store.read_metadata("cancer_classifier", "v1.0.0")
    assert metadata.labels == ["malignant", "benign"] and metadata.parity.passed
    rows = np.load(folder / "sample.npy")[:5]
    answer = run_store_model(store, "cancer_classifier", {"input": rows})
    assert set(answer["label"]) <= {"malignant", "benign"}


def test_regressor_trains_and_exports(trained, tmp_path):
    folder = trained["diabetes_regressor"].parent
    assert set(json.loads((folder / "metrics.json").read_text())) == {"r2", "mae", "rmse"}

    assert main(["export", str(trained["diabetes_regressor"]), "--name", "diabetes_regressor", "--version", "v1.0.0",
                 "--metrics", str(folder / "metrics.json"), "--sample", str(folder / "sample.npy"),
                 "--store", str(tmp_path)]) == 0

    metadata = Store(tmp_path).read_metadata("diabetes_regressor", "v1.0.0")
    assert metadata.task == "regression" and metadata.parity.passed and metadata.metrics["r2"] > 0


def test_intent_classifier_trains_and_exports_with_its_tokenizer(trained, tmp_path):
    folder = trained["intent_classifier"].parent
    assert json.loads((folder / "metrics.json").read_text())["accuracy"] > 0.8

    assert main(["export", str(trained["intent_classifier"]), "--name", "intent_classifier", "--version", "v1.0.0",
                 "--metrics", str(folder / "metrics.json"), "--sample", str(folder / "sample.json"),
                 "--labels-file", str(folder / "labels.txt"), "--tokenizer", str(folder / "tokenizer.json"),
                 "--store", str(tmp_path)]) == 0

    store = Store(tmp_path)
    metadata = store.read_metadata("intent_classifier", "v1.0.0")
    assert metadata.tokenizer.max_length == intent_classifier.MAX_LENGTH and metadata.parity.passed
    from exporters.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(store.version_dir("intent_classifier", "v1.0.0") / "tokenizer.json")
    ids, mask = tokenizer.encode(["hello there 👋", "the food was cold 😡", "à quelle heure fermez-vous ?"])
    answer = run_store_model(store, "intent_classifier", {"input_ids": ids, "attention_mask": mask})
    assert answer["label"] == ["greeting", "complaint", "question"]


def test_train_all_command_writes_every_example(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ml.examples.train_all", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name, artefact in (("cancer_classifier", "cancer_classifier.joblib"),
                           ("intent_classifier", "intent_classifier.pt"),
                           ("diabetes_regressor", "diabetes_regressor.joblib")):
        assert (tmp_path / name / artefact).is_file() and (tmp_path / name / "metrics.json").is_file()
