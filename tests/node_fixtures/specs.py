"""Metadata for fixture models: the fields an exporter would fill, with honest placeholders for checks not run here."""
from __future__ import annotations

import onnx
import onnxruntime

from modelstore.metadata import (
    ModelMetadata,
    NodeCompatibility,
    ParityResult,
    ReferenceStats,
    TensorSpec,
    TokenizerInfo,
)

ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(string)": "string"}


def tensor_specs(nodes: list) -> list[TensorSpec]:
    """Signature entries from onnxruntime's view of the graph, so metadata matches what the session really takes."""
    specs = []
    for node in nodes:
        shape = [dim if isinstance(dim, int) else "batch" if index == 0 else dim for index, dim in enumerate(node.shape)]
        specs.append(TensorSpec(name=node.name, dtype=ONNX_TYPES[node.type], shape=shape))
    return specs


def make_metadata(model_bytes: bytes, *, name: str, version: str, framework: str, framework_version: str, task: str,
                  labels: list[str] | None = None, label_output: str | None = None, score_output: str | None = None,
                  tokenizer: TokenizerInfo | None = None) -> ModelMetadata:
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    model = onnx.load_from_string(model_bytes)
    opset = max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    return ModelMetadata(
        name=name, version=version, framework=framework, framework_version=framework_version, task=task, opset=opset,
        inputs=tensor_specs(session.get_inputs()), outputs=tensor_specs(session.get_outputs()),
        model_sha256="", model_size=0, labels=labels, label_output=label_output, score_output=score_output,
        parity=ParityResult(passed=True, rows=0, synthetic_rows=True, tolerance=1e-5, reference="fixture (not checked)"),
        node_compatibility=NodeCompatibility(compatible=True, opset=opset, max_opset=21),
        reference_stats=ReferenceStats(available=False, reason="test fixture"),
        tokenizer=tokenizer, source="tests.node_fixtures",
    )
