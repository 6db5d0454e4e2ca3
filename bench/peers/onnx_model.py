"""What every peer server shares: which ONNX files to load, the floor's SessionOptions, and one prediction.

Imported inside the peers' own virtualenvs, so it needs nothing but onnxruntime, numpy and the standard library
(not the gateway: `test_bench.py` checks these options against `gateway.loader.session_options`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODELS_ENV = "ONNXGATE_BENCH_MODELS"  # JSON object: model name -> path of its .onnx file
READY_PATH = "/v2/health/ready"


def model_paths(environ: dict[str, str] | None = None) -> dict[str, Path]:
    raw = (os.environ if environ is None else environ).get(MODELS_ENV)
    if not raw:
        raise SystemExit(f"{MODELS_ENV} is not set: a JSON object of model name -> .onnx path")
    return {name: Path(path) for name, path in json.loads(raw).items()}


def session_options() -> ort.SessionOptions:
    """The gateway's and the floor's options: one thread per run, no spinning, sequential, all graph optimizations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 4
    return options


class OnnxModel:
    """One InferenceSession with its input and output names looked up once, as the floor does."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict(self, rows: object) -> dict:
        """Rows (a list of float lists, as predict.lua sends them) in, the floor's answer shape out."""
        raw = self.session.run(None, {self.input_name: np.asarray(rows, dtype=np.float32)})
        return {"outputs": {name: value.tolist() for name, value in zip(self.output_names, raw, strict=True)}}


def load_models(environ: dict[str, str] | None = None) -> dict[str, OnnxModel]:
    return {name: OnnxModel(path) for name, path in model_paths(environ).items()}
