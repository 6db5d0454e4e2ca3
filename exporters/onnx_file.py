"""An existing .onnx file, taken as is: read, checked by the ONNX checker, and described."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from exporters.errors import ExportError
from modelstore.metadata import TensorSpec


@dataclass(frozen=True)
class OnnxFile:
    path: Path
    model: onnx.ModelProto
    data: bytes

    @property
    def producer(self) -> str:
        return self.model.producer_name or "onnx"

    @property
    def producer_version(self) -> str:
        return self.model.producer_version or onnx.__version__


def read_onnx_file(path: str | Path) -> OnnxFile:
    path = Path(path)
    try:
        data = path.read_bytes()
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise ExportError(f"{path} is not a valid ONNX model: {str(exc).strip().splitlines()[0][:300]}") from None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ExportError(f"{path} keeps weights in external data files; save it as a single .onnx file")
    return OnnxFile(path=path, model=model, data=data)


def guess_outputs(outputs: list[TensorSpec]) -> tuple[str | None, str | None]:
    """(label_output, score_output): the first integer or string output of rank 1, the first float output."""
    label = next((s.name for s in outputs if len(s.shape) == 1 and (s.dtype.startswith("int") or s.dtype == "string")),
                 None)
    score = next((s.name for s in outputs if s.dtype.startswith("float")), None)
    return label, score
