"""Retraining fixtures: the breast cancer data as a training window and a holdout CSV, retrain.toml written per test,
the real training script (ml/examples/retrain_tabular.py), and captured traffic written by the real capture writer
with the real ONNX model's answers."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import pytest
from sklearn.datasets import load_breast_cancer

from modelstore.layout import Store
from monitoring.capture import Bounds, CaptureFiles, capture_record
from monitoring.feedback import Feedback, append_labels
from tests.factories import make_store
from tests.governance.conftest import write_csv

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ml" / "examples" / "retrain_tabular.py"
NAMES = ["malignant", "benign"]
LABEL = "diagnosis"
TEXTURE = "f1"  # mean texture: a weak predictor on its own
WEAK = f"{{python}} {SCRIPT} --data {{data}} --label {LABEL} --out {{output}} --keep {TEXTURE}"
STRONG = f"{{python}} {SCRIPT} --data {{data}} --label {LABEL} --out {{output}}"
EXPORT = ('{ sample = "{output}/sample.npy", reference_data = "{output}/reference.csv", '
          'labels_file = "{output}/labels.txt", metrics = "{output}/metrics.json", check_node = false }')
LARGE = Bounds(file_max_bytes=1 << 30, total_max_bytes=1 << 31)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "store")


@pytest.fixture(scope="session")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    return x[::2], y[::2], x[1::2], y[1::2]


def data_csv(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    header = [*(f"f{index}" for index in range(x.shape[1])), LABEL]
    return write_csv(path, header, [[*(repr(float(v)) for v in row), NAMES[label]] for row, label in zip(x, y, strict=True)])


@pytest.fixture
def workdir(tmp_path: Path, cancer) -> Path:
    """data/window.csv (the training window) and data/holdout.csv, in a working directory of their own."""
    x_train, y_train, x_hold, y_hold = cancer
    root = tmp_path / "work"
    (root / "data").mkdir(parents=True)
    data_csv(root / "data" / "window.csv", x_train, y_train)
    data_csv(root / "data" / "holdout.csv", x_hold, y_hold)
    return root


def write_config(store: Store, workdir: Path, *, command: str = STRONG, triggers: str = "", extra: str = "",
                 name: str = "cancer", timeout: str = "5m", cooldown: str = "1h", weight: float = 10) -> None:
    text = textwrap.dedent(f"""\
        [models.{name}]
        command = {json.dumps(command)}
        artifact = "model.joblib"
        workdir = {json.dumps(str(workdir))}
        data = "data/window.csv"
        timeout = "{timeout}"
        cooldown = "{cooldown}"
        export = {EXPORT}
        holdout = {{ data = "data/holdout.csv", label = "{LABEL}" }}
        challenge = {{ environment = "production", metric = "f1", min_improvement = 0.05, weight = {weight} }}
        """) + extra
    if triggers:
        text += f"\n[models.{name}.triggers]\n{textwrap.dedent(triggers)}"
    (store.root / "retrain.toml").write_text(text)


def onnxgate(store: Store, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxgate", *args, "--store", str(store.root)], capture_output=True,
                          text=True, timeout=timeout)


def retrain_json(store: Store, *args: str) -> tuple[int, object, str]:
    result = onnxgate(store, "retrain", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else None, result.stderr


def answers(store: Store, name: str, version: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    metadata = store.read_metadata(name, version)
    session = ort.InferenceSession(store.read_file(name, version, metadata.model_file),
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {metadata.inputs[0].name: rows.astype(np.float32)})
    return {spec.name: np.asarray(value) for spec, value in zip(session.get_outputs(), outputs, strict=True)
            if not isinstance(value, list)}


def capture(store: Store, name: str, version: str, rows: np.ndarray, now: float, environment: str = "production",
            prefix: str = "r") -> list[dict]:
    """One captured request per row, with the real model's answers, appended by the real writer; the records."""
    metadata = store.read_metadata(name, version)
    input_name = metadata.inputs[0].name
    answered = answers(store, name, version, rows)
    records, lines = [], []
    for index, row in enumerate(rows):
        feeds = {input_name: row[None, :].astype(np.float32)}
        record = capture_record(f"{prefix}{index}", now, name, environment, version, "stable", metadata, feeds,
                                {key: value[index:index + 1] for key, value in answered.items()})
        records.append(record)
        lines.append(orjson.dumps(record) + b"\n")
    CaptureFiles(store.root, LARGE).append(name, environment, lines, now)
    return records


def label(store: Store, name: str, records: list[dict], truths: list[str], now: float,
          environment: str = "production") -> None:
    append_labels(store.root, name, environment,
                  [Feedback(record["id"], "label", truth) for record, truth in zip(records, truths, strict=True)], now)
