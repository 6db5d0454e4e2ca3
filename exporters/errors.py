"""Errors of the exporters. All derive from StoreError so the CLI maps them to one line and an exit code."""
from __future__ import annotations

from modelstore.errors import StoreError


class ExportError(StoreError):
    """The model could not be turned into a store version; the message says which model and why."""


class SourceLoadError(ExportError):
    """The source file or `module:attr` spec could not be loaded as a model."""


class IncompatibleModel(ExportError):
    """The ONNX model would not load in onnxruntime-node (sequence/map outputs, custom ops, too new an opset)."""


class ParityError(ExportError):
    """The ONNX model's answers differ from the source model's beyond the tolerance."""


class NodeParityError(ExportError):
    """onnxruntime-node answers differently from onnxruntime (Python) on the same rows."""
