"""torch.nn.Module (or TorchScript) -> ONNX, and the source module's own answers for parity.

Exporter path, as found in torch 2.13: a plain nn.Module goes through the torch.export-based exporter
(`dynamo=True`, the default since 2.9, needs onnxscript), opset 18, its native opset. TorchScript modules cannot be
captured by torch.export, so they go through the older TorchScript exporter (`dynamo=False`), which torch 2.13 still
ships but marks deprecated.

Inputs: float32 "input" for tabular and image models; int64 "input_ids" (+ "attention_mask" when forward takes a
second argument) for text models. Classifiers (labels given) are wrapped so the ONNX model answers like a
scikit-learn one: "label" (argmax, int64) and "probabilities" (softmax of the logits, or the module's own
probabilities).
"""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from collections.abc import Iterator

import numpy as np
import onnx
import torch
from torch import nn

from exporters.errors import ExportError

OPSET = 18
INPUT_NAME = "input"
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LABEL_OUTPUT = "label"
SCORE_OUTPUT = "probabilities"
MIN_EXAMPLE_ROWS = 2  # torch.export specialises a batch axis of size 0 or 1 to a constant


class _Classifier1(nn.Module):
    def __init__(self, module: nn.Module, apply_softmax: bool) -> None:
        super().__init__()
        self.module = module
        self.apply_softmax = apply_softmax

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _label_and_probabilities(self.module(x), self.apply_softmax)


class _Classifier2(nn.Module):
    def __init__(self, module: nn.Module, apply_softmax: bool) -> None:
        super().__init__()
        self.module = module
        self.apply_softmax = apply_softmax

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _label_and_probabilities(self.module(x, mask), self.apply_softmax)


def _label_and_probabilities(scores: torch.Tensor, apply_softmax: bool) -> tuple[torch.Tensor, torch.Tensor]:
    probabilities = torch.softmax(scores, dim=-1) if apply_softmax else scores
    return torch.argmax(probabilities, dim=-1), probabilities


def as_classifier(module: nn.Module, arity: int, *, scores: str = "logits") -> nn.Module:
    """Wrap a module returning class scores [batch, classes] so it returns (label, probabilities)."""
    if scores not in ("logits", "probabilities"):
        raise ExportError(f"scores must be 'logits' or 'probabilities', not {scores!r}")
    wrapper = (_Classifier1 if arity == 1 else _Classifier2)(module, apply_softmax=scores == "logits").eval()
    # The TorchScript exporter can only trace into a TorchScript submodule from a scripted parent.
    return torch.jit.script(wrapper) if is_torchscript(module) else wrapper


def is_torchscript(module: object) -> bool:
    return isinstance(module, torch.jit.ScriptModule)


def forward_arity(module: nn.Module) -> int:
    """How many tensors forward takes positionally (TorchScript schema or Python signature)."""
    if is_torchscript(module):
        return len(module.forward.schema.arguments) - 1
    parameters = inspect.signature(module.forward).parameters.values()
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def input_names(module: nn.Module, *, text: bool) -> list[str]:
    arity = forward_arity(module)
    if text:
        if arity < 1:
            raise ExportError(f"{type(module).__name__}.forward takes no input")
        return [INPUT_IDS, ATTENTION_MASK] if arity >= 2 else [INPUT_IDS]
    if arity != 1:
        raise ExportError(f"{type(module).__name__}.forward takes {arity} inputs; tabular and image models take one "
                          f"float tensor (text models: pass a tokenizer)")
    return [INPUT_NAME]


def run_module(module: nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The module's outputs on the feeds (in input order), as numpy arrays."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(value)) for value in feeds.values())
    try:
        with torch.no_grad():
            result = module(*args)
    except Exception as exc:
        raise ExportError(f"{type(module).__name__} fails on the sample rows: {_summary(exc)}") from None
    values = result if isinstance(result, tuple | list) else (result,)
    if not all(isinstance(value, torch.Tensor) for value in values):
        raise ExportError(f"{type(module).__name__} must return a tensor or a tuple of tensors")
    return [value.detach().cpu().numpy() for value in values]


def output_names_for(count: int, classifier: bool) -> list[str]:
    if classifier:
        return [LABEL_OUTPUT, SCORE_OUTPUT]
    return ["output"] if count == 1 else [f"output_{index}" for index in range(count)]


def convert(module: nn.Module, example: dict[str, np.ndarray], output_names: list[str], *,
            legacy: bool = False) -> onnx.ModelProto:
    """Export with a dynamic batch axis on every input and output. `example` maps input names to arrays."""
    example = {name: _at_least_rows(value, MIN_EXAMPLE_ROWS) for name, value in example.items()}
    args = tuple(torch.from_numpy(np.ascontiguousarray(value)) for value in example.values())
    names = list(example)
    try:
        with _quiet():
            if legacy:
                buffer = io.BytesIO()
                torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET, input_names=names,
                                  output_names=output_names,
                                  dynamic_axes={name: {0: "batch"} for name in names + output_names})
                return onnx.load_from_string(buffer.getvalue())
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(module, args, None, dynamo=True, opset_version=OPSET, input_names=names,
                                        output_names=output_names, dynamic_shapes=tuple({0: batch} for _ in args),
                                        verbose=False)
            return program.model_proto
    except Exception as exc:
        raise ExportError(f"torch.onnx.export cannot convert {type(module).__name__}: {_summary(exc)}") from None


def _at_least_rows(value: np.ndarray, rows: int) -> np.ndarray:
    if len(value) >= rows:
        return value[: max(rows, min(len(value), 8))]
    return np.concatenate([value] * rows)[:rows]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx prints progress to stdout and logs warnings about optional packages: keep the CLI output clean."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _summary(exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip()
    line = text.splitlines()[0] if text else type(root).__name__
    return f"{type(root).__name__}: {line[:300]}"


def framework_version() -> str:
    return torch.__version__
