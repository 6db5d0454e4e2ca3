from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, NodeCompatibility, ParityResult, ReferenceStats, TensorSpec
from modelstore.writer import publish


def tiny_classifier_onnx(seed: int = 0, features: int = 4) -> bytes:
    """A real linear classifier graph: probabilities = softmax(x W + b), label = argmax."""
    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(size=(features, 2)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=(2,)).astype(np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_metadata(name: str, version: str, features: int = 4) -> ModelMetadata:
    return ModelMetadata(
        name=name, version=version, framework="onnx", framework_version=onnx.__version__, task="classification",
        opset=17, inputs=[TensorSpec(name="input", dtype="float32", shape=["batch", features])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                 TensorSpec(name="probabilities", dtype="float32", shape=["batch", 2])],
        model_sha256="", model_size=0, labels=["no", "yes"], label_output="label", score_output="probabilities",
        metrics={"accuracy": 0.9}, training_samples=100,
        parity=ParityResult(passed=True, rows=0, synthetic_rows=True, tolerance=1e-4, reference="none"),
        node_compatibility=NodeCompatibility(compatible=True, opset=17, max_opset=21),
        reference_stats=ReferenceStats(available=False, reason="test model"),
    )


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Store]:
    """make_store(versions={"tiny": ["v1.0.0"]}) -> a real store with real ONNX models in it."""

    def build(versions: dict[str, list[str]] | None = None, root: Path | None = None) -> Store:
        store = Store(root or tmp_path / "store")
        store.root.mkdir(parents=True, exist_ok=True)
        for name, names in (versions or {}).items():
            for index, version in enumerate(names):
                publish(store, tiny_metadata(name, version), tiny_classifier_onnx(seed=index))
        return store

    return build
