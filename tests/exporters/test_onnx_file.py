from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

from exporters.compat import MAX_NODE_OPSET, check_compatibility
from exporters.errors import ExportError, IncompatibleModel
from exporters.publish import PublishOptions, export_onnx_file
from modelstore.metadata import read_metadata

NO_NODE = PublishOptions(check_node=False)


@pytest.fixture(scope="module")
def iris_logreg(iris):
    x_train, y_train, _ = iris
    return LogisticRegression(max_iter=500).fit(x_train, y_train)


def save_sklearn(model, path, *, zipmap: bool):
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))],
                          target_opset={"": 21, "ai.onnx.ml": 3}, options={"zipmap": zipmap})
    onnx.save(onx, path)
    return path


def relu_model(opset: int, domain: str = "") -> onnx.ModelProto:
    node = helper.make_node("Relu" if not domain else "MyRelu", ["input"], ["output"], domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3])])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=10)


def test_zipmap_classifier_is_refused_naming_the_output(tmp_path, iris, iris_logreg, store):
    path = save_sklearn(iris_logreg, tmp_path / "zipmap.onnx", zipmap=True)

    with pytest.raises(IncompatibleModel) as refused:
        export_onnx_file(store, path, name="zipmap", version="v1.0.0", sample=iris[2], options=NO_NODE)

    message = str(refused.value)
    assert "'output_probability'" in message and "ZipMap" in message and "{'zipmap': False}" in message
    assert not store.root.exists() or store.list_models() == []


def test_allow_incompatible_publishes_and_records_the_problem(tmp_path, iris, iris_logreg, store):
    path = save_sklearn(iris_logreg, tmp_path / "zipmap.onnx", zipmap=True)

    metadata = export_onnx_file(store, path, name="zipmap", version="v1.0.0", sample=iris[2],
                                options=PublishOptions(check_node=False, allow_incompatible=True))

    assert metadata.node_compatibility.compatible is False
    assert any("output_probability" in problem for problem in metadata.node_compatibility.problems)


def test_onnx_file_import_keeps_the_bytes_and_records_checks(tmp_path, iris, iris_logreg, store):
    path = save_sklearn(iris_logreg, tmp_path / "plain.onnx", zipmap=False)

    metadata = export_onnx_file(store, path, name="imported", version="v1.2.0", sample=iris[2],
                                labels=["setosa", "versicolor", "virginica"], options=NO_NODE)

    assert store.model_path("imported", "v1.2.0").read_bytes() == path.read_bytes()
    on_disk = read_metadata(store.metadata_path("imported", "v1.2.0"))
    assert on_disk == metadata
    assert metadata.framework == "skl2onnx" and metadata.task == "classification"
    assert metadata.label_output == "label" and metadata.score_output == "probabilities"
    assert metadata.parity.passed and metadata.parity.rows == len(iris[2]) and metadata.parity.max_abs_diff is None
    assert metadata.node_compatibility.compatible and metadata.node_compatibility.opset <= MAX_NODE_OPSET
    assert metadata.reference_stats.available and metadata.reference_stats.rows == len(iris[2])
    store.verify_version("imported", "v1.2.0")


def test_onnx_file_without_sample_runs_synthetic_rows(tmp_path, store):
    path = tmp_path / "relu.onnx"
    onnx.save(relu_model(17), path)

    metadata = export_onnx_file(store, path, name="relu", version="v1.0.0", options=NO_NODE)

    assert metadata.parity.synthetic_rows and not metadata.reference_stats.available
    assert metadata.inputs[0].shape == ["batch", 3]


def test_not_an_onnx_file_is_an_export_error(tmp_path, store):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"definitely not protobuf")
    with pytest.raises(ExportError, match="not a valid ONNX model"):
        export_onnx_file(store, path, name="junk", version="v1.0.0", options=NO_NODE)


def test_compat_flags_new_opsets_and_custom_ops():
    assert check_compatibility(relu_model(MAX_NODE_OPSET)).compatible
    too_new = check_compatibility(relu_model(MAX_NODE_OPSET + 1))
    assert not too_new.compatible and f"opset {MAX_NODE_OPSET + 1}" in too_new.problems[0]
    custom = check_compatibility(relu_model(17, domain="com.example"))
    assert not custom.compatible and "'MyRelu'" in custom.problems[0] and "com.example" in custom.problems[0]


def test_compat_flags_unsupported_element_types():
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.COMPLEX64, ["n"])],
                              [helper.make_tensor_value_info("output", TensorProto.COMPLEX64, ["n"])])
    result = check_compatibility(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert not result.compatible and "complex64" in result.problems[0]
    assert np.dtype("complex64").name == "complex64"
