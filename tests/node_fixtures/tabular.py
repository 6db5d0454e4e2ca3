"""Tabular fixture models: a float32 classifier and a float64 regressor (skl2onnx), and a hand-built graph with
several outputs of different dtypes (onnx.helper)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import sklearn
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier

from modelstore.metadata import ModelMetadata
from tests.node_fixtures.specs import make_metadata

OPSET = 17


@dataclass
class Fixture:
    """One model to publish and the request rows to run through both runtimes."""

    metadata: ModelMetadata
    model_bytes: bytes
    requests: list[dict]
    extra_files: dict[str, bytes] = field(default_factory=dict)


def iris_classifier() -> Fixture:
    iris = load_iris()
    features = iris.data.astype(np.float32)
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(features, iris.target)
    onx = to_onnx(model, features[:1], target_opset={"": OPSET, "ai.onnx.ml": 3}, options={"zipmap": False})
    model_bytes = onx.SerializeToString()
    metadata = make_metadata(model_bytes, name="iris", version="v1.0.0", framework="scikit-learn",
                             framework_version=sklearn.__version__, task="classification",
                             labels=[str(n) for n in iris.target_names], label_output="label",
                             score_output="probabilities")
    rows = features[::7].tolist()
    return Fixture(metadata, model_bytes, [{"inputs": rows}, {"inputs": {"X": rows[:3]}}, {"inputs": rows[:1]}])


def house_regressor() -> Fixture:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(64, 3))
    target = features @ np.array([1.5, -2.0, 0.25]) + 3.0 + rng.normal(scale=0.1, size=64)
    model = LinearRegression().fit(features, target)
    onx = to_onnx(model, features[:1], target_opset={"": OPSET, "ai.onnx.ml": 3})
    model_bytes = onx.SerializeToString()
    metadata = make_metadata(model_bytes, name="house-price", version="v2.1.0", framework="scikit-learn",
                             framework_version=sklearn.__version__, task="regression", score_output="variable")
    return Fixture(metadata, model_bytes, [{"inputs": features[:9].tolist()}])


def multi_output() -> Fixture:
    """X float32[batch, 3] -> total float32[batch, 1], doubled float64[batch, 3], positive bool[batch, 3],
    cluster int64[batch] (argmax; labels cover ids 0 and 1 only, so id 2 stays a number)."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])
    outputs = [
        helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("doubled", TensorProto.DOUBLE, ["batch", 3]),
        helper.make_tensor_value_info("positive", TensorProto.BOOL, ["batch", 3]),
        helper.make_tensor_value_info("cluster", TensorProto.INT64, ["batch"]),
    ]
    two = helper.make_tensor("two", TensorProto.DOUBLE, [], [2.0])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("ReduceSum", ["X", "sum_axes"], ["total"], keepdims=1),
        helper.make_node("Cast", ["X"], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["x64", "two"], ["doubled"]),
        helper.make_node("Greater", ["X", "zero"], ["positive"]),
        helper.make_node("ArgMax", ["X"], ["cluster"], axis=1, keepdims=0),
    ]
    axes = helper.make_tensor("sum_axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "multi_output", [x], outputs, initializer=[two, zero, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="node_fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    model_bytes = model.SerializeToString()
    metadata = make_metadata(model_bytes, name="multi-head", version="v0.3.0-beta.2", framework="onnx",
                             framework_version=onnx.__version__, task="other", labels=["left", "middle"],
                             label_output="cluster", score_output="total")
    rows = [[0.5, -1.25, 3.0], [-2.0, -0.5, -1.0], [7.0, 2.0, 1.0], [1e-3, 0.2, 0.1]]
    return Fixture(metadata, model_bytes, [{"inputs": {"X": rows}}, {"inputs": rows}])
