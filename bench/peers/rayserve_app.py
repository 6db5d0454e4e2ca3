"""Ray Serve peer: one deployment, one replica, whose `__init__` loads the ONNX files with onnxruntime and whose async
`__call__` answers `POST /predict/{model}` (the body predict.lua sends) and the harness's ready path.

`--max-ongoing-requests` left out keeps Ray's default (5 requests in flight per replica; the proxy queues the rest).
A local Ray instance is started in this process (`ray.init`) without its dashboard, and the per-request access log is
off as in the gateway. Runs in bench/.rayserve-venv (bench/peers/rayserve.txt):

ONNXGATE_BENCH_MODELS='{"lr": "/path/lr.onnx"}' bench/.rayserve-venv/bin/python bench/peers/rayserve_app.py --port 8000
"""
from __future__ import annotations

import argparse
import signal
import threading

import ray
from onnx_model import READY_PATH, load_models
from ray import serve
from starlette.requests import Request


class OnnxClassifier:
    def __init__(self) -> None:
        self.models = load_models()

    async def __call__(self, request: Request) -> dict:
        if request.method == "GET" and request.url.path == READY_PATH:
            return {"status": "ok"}
        name = request.url.path.removeprefix("/predict/")
        return self.models[name].predict((await request.json())["inputs"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-ongoing-requests", type=int, default=None, help="Ray's default (5) when left out")
    args = parser.parse_args()
    options = {} if args.max_ongoing_requests is None else {"max_ongoing_requests": args.max_ongoing_requests}
    deployment = serve.deployment(num_replicas=1, **options)(OnnxClassifier)
    ray.init(include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(deployment.bind(), route_prefix="/", logging_config={"enable_access_log": False})
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
