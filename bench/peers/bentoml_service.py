"""BentoML peer: a `@bentoml.service` class that loads the ONNX files with onnxruntime in `__init__`, one
`@bentoml.api` per model at `/predict/{model}` taking the rows as `inputs` (the JSON body predict.lua sends).

One worker (`workers=1`, its default, written out); metrics stay on as in the gateway, the per-request access log is
off as in the gateway. Runs in bench/.bentoml-venv (bench/peers/bentoml.txt):

ONNXGATE_BENCH_MODELS='{"lr": "/path/lr.onnx"}' bench/.bentoml-venv/bin/bentoml serve bentoml_service:OnnxClassifier \
    --working-dir bench/peers --host 127.0.0.1 --port 8000
"""
from __future__ import annotations

import bentoml
from onnx_model import load_models


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class OnnxClassifier:
    def __init__(self) -> None:
        self.models = load_models()

    # BentoML routes are fixed per method, so one method per benchmark model (bench/train_sklearn.py MODEL_KINDS).
    @bentoml.api(route="/predict/lr")
    def lr(self, inputs: list[list[float]]) -> dict:
        return self.models["lr"].predict(inputs)

    @bentoml.api(route="/predict/rf")
    def rf(self, inputs: list[list[float]]) -> dict:
        return self.models["rf"].predict(inputs)
