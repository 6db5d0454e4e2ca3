"""Reading an ONNX model: its signature as TensorSpecs, its opsets, and running it in onnxruntime."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort

from exporters.errors import ExportError
from modelstore.metadata import BATCH_AXIS, TensorSpec

STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def numpy_dtype_name(elem_type: int) -> str:
    """ONNX element type -> numpy name ("float32", "int64", "string", ...)."""
    if elem_type == onnx.TensorProto.STRING:
        return "string"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    """A graph input/output as a TensorSpec; the first symbolic or unknown axis is written as the batch axis."""
    tensor_type = value.type.tensor_type
    shape: list[int | str | None] = []
    for index, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif index == 0:
            shape.append(BATCH_AXIS)
        else:
            shape.append(dim.dim_param or None)
    return TensorSpec(name=value.name, dtype=numpy_dtype_name(tensor_type.elem_type), shape=shape)


def signature(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [tensor_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [tensor_spec(v) for v in model.graph.output]


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return max(versions, default=0)


def make_session(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own unrelated exception types
        raise ExportError(f"onnxruntime cannot load the exported model: {_first_line(exc)}") from None


def run_model(model_bytes: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = make_session(model_bytes)
    try:
        values = session.run(None, dict(feeds))
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot run the exported model on the sample rows: {_first_line(exc)}") from None
    return {out.name: np.asarray(value) for out, value in zip(session.get_outputs(), values, strict=True)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
