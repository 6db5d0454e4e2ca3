"""Will onnxruntime-node load and answer this model? Checked statically on the ONNX graph at export time.

MAX_NODE_OPSET = 21: onnxruntime 1.20 was the first release implementing every ai.onnx operator up to opset 21, so a
model at or below it loads in the pinned onnxruntime-node 1.30.0 and in any deployment on 1.20 or later. Verified by
loading and running opset-21 models (Reshape/Cast/Flatten at their opset-21 definitions, and skl2onnx/torch exports
from this package) in onnxruntime-node 1.30.0. Our own exporters target opset 21 (scikit-learn) and 18 (PyTorch).
"""
from __future__ import annotations

import onnx

from exporters.errors import IncompatibleModel
from exporters.onnx_model import STANDARD_DOMAINS, ai_onnx_opset, numpy_dtype_name
from modelstore.metadata import TENSOR_DTYPES, NodeCompatibility

MAX_NODE_OPSET = 21


def check_compatibility(model: onnx.ModelProto) -> NodeCompatibility:
    opset = ai_onnx_opset(model)
    problems = [
        *_value_problems(model, "input", model.graph.input),
        *_value_problems(model, "output", model.graph.output),
        *_domain_problems(model),
    ]
    if opset > MAX_NODE_OPSET:
        problems.append(f"ai.onnx opset {opset} is above {MAX_NODE_OPSET}, the highest onnxruntime-node is checked "
                        f"against; re-export with target opset {MAX_NODE_OPSET} or lower")
    return NodeCompatibility(compatible=not problems, opset=opset, max_opset=MAX_NODE_OPSET, problems=problems)


def require_compatible(result: NodeCompatibility) -> None:
    if not result.compatible:
        raise IncompatibleModel("model is not compatible with onnxruntime-node: " + "; ".join(result.problems)
                                + " (or pass --allow-incompatible to publish it anyway)")


def _value_problems(model: onnx.ModelProto, kind: str, values) -> list[str]:
    initializers = {init.name for init in model.graph.initializer}
    problems = []
    for value in values:
        if value.name in initializers:
            continue
        which = value.type.WhichOneof("value")
        if which != "tensor_type":
            problems.append(_non_tensor_problem(model, kind, value))
            continue
        dtype = numpy_dtype_name(value.type.tensor_type.elem_type)
        if dtype not in TENSOR_DTYPES:
            problems.append(f"{kind} {value.name!r} has element type {dtype}, which onnxruntime-node cannot hold "
                            f"(supported: {', '.join(TENSOR_DTYPES)})")
    return problems


def _non_tensor_problem(model: onnx.ModelProto, kind: str, value: onnx.ValueInfoProto) -> str:
    text = f"{kind} {value.name!r} is a {describe_type(value.type)}, not a tensor"
    producer = next((node for node in model.graph.node if value.name in node.output), None)
    if producer is not None and producer.op_type == "ZipMap":
        return f"{text}: made by ZipMap; re-export the classifier with options={{'zipmap': False}}"
    if producer is not None:
        return f"{text}: made by {producer.op_type}; change the model so it returns tensors only"
    return f"{text}; change the model so it takes and returns tensors only"


def describe_type(type_proto: onnx.TypeProto) -> str:
    which = type_proto.WhichOneof("value")
    if which == "tensor_type":
        return f"tensor({numpy_dtype_name(type_proto.tensor_type.elem_type)})"
    if which == "sequence_type":
        return f"sequence<{describe_type(type_proto.sequence_type.elem_type)}>"
    if which == "map_type":
        key = numpy_dtype_name(type_proto.map_type.key_type)
        return f"map<{key},{describe_type(type_proto.map_type.value_type)}>"
    if which == "optional_type":
        return f"optional<{describe_type(type_proto.optional_type.elem_type)}>"
    return str(which)


def _domain_problems(model: onnx.ModelProto) -> list[str]:
    local_functions = {function.domain for function in model.functions}
    allowed = set(STANDARD_DOMAINS) | local_functions
    problems = []
    custom_ops = sorted({(node.domain, node.op_type) for node in _all_nodes(model) if node.domain not in allowed})
    for domain, op_type in custom_ops:
        problems.append(f"operator {op_type!r} of custom domain {domain!r} is not available in onnxruntime-node; "
                        f"use standard ONNX operators only")
    return problems


def _all_nodes(model: onnx.ModelProto):
    yield from model.graph.node
    for function in model.functions:
        yield from function.node
