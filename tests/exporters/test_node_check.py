from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from exporters.errors import NodeParityError
from exporters.node_check import compare_formatted
from exporters.publish import PublishOptions, export_sklearn
from tests.exporters.conftest import requires_node

WRONG_ANSWER = """
import { readFileSync } from 'node:fs';
const rows = JSON.parse(readFileSync(process.argv[process.argv.indexOf('--rows') + 1], 'utf8'));
const n = rows.inputs.input.length;
console.log(JSON.stringify({outputs: {label: Array(n).fill('setosa'), probabilities: Array(n).fill([1, 0, 0])}}));
"""


@pytest.fixture(scope="module")
def model(iris):
    x_train, y_train, _ = iris
    return LogisticRegression(max_iter=500).fit(x_train, y_train)


LABELS = ["setosa", "versicolor", "virginica"]


@requires_node
def test_node_loader_agrees_with_python(model, iris, store):
    metadata = export_sklearn(store, model, name="iris", version="v1.0.0", sample=iris[2], labels=LABELS)

    node = metadata.node_compatibility.node_parity
    assert node.checked and node.passed, node.detail
    assert node.max_abs_diff <= 1e-5 and node.label_agreement == 1.0 and node.onnxruntime_node


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_node_disagreement_refuses_and_leaves_the_store_unchanged(model, iris, store, tmp_path, monkeypatch):
    fake = tmp_path / "fake-node"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "predict-rows.mjs").write_text(WRONG_ANSWER, encoding="utf-8")
    (fake / "node_modules" / "onnxruntime-node").mkdir(parents=True)
    (fake / "node_modules" / "onnxruntime-node" / "package.json").write_text(json.dumps({"version": "0.0.0"}))
    monkeypatch.setenv("ONNXGATE_NODE_DIR", str(fake))

    with pytest.raises(NodeParityError, match="nothing was published"):
        export_sklearn(store, model, name="iris", version="v1.0.0", sample=iris[2], labels=LABELS)
    assert not store.root.exists() or store.list_models() == []


def test_unavailable_node_is_recorded_not_fatal(model, iris, store, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXGATE_NODE_DIR", str(tmp_path / "missing"))

    metadata = export_sklearn(store, model, name="iris", version="v1.0.0", sample=iris[2], labels=LABELS)

    node = metadata.node_compatibility.node_parity
    assert node.checked is False and ("does not exist" in node.detail or "not on PATH" in node.detail)


def test_no_check_node_is_recorded(model, iris, store):
    metadata = export_sklearn(store, model, name="iris", version="v1.0.0", sample=iris[2],
                              options=PublishOptions(check_node=False))
    assert metadata.node_compatibility.node_parity.detail == "skipped (--no-check-node)"


def test_compare_formatted_names_what_differs():
    expected = {"label": ["a", "b"], "probabilities": [[0.25, 0.75], [0.5, 0.5]]}
    same = compare_formatted(expected, json.loads(json.dumps(expected)), version="1.30.0")
    assert same.passed and same.max_abs_diff == 0.0 and same.label_agreement == 1.0

    shifted = {"label": ["a", "a"], "probabilities": (np.array(expected["probabilities"]) + 1e-3).tolist()}
    differs = compare_formatted(expected, shifted, version="1.30.0")
    assert not differs.passed and differs.label_agreement == 0.5
    assert "'label'" in differs.detail and "exceeds" in differs.detail
