"""The floor: the least a Python server can do to answer /predict with onnxruntime, to measure the gateway against.

One route, `POST /predict/{model}`, with the gateway's request shape (`{"inputs": [[...floats...]]}`) and named
outputs as nested lists. No validation, no metrics, no thread hop: orjson parse, np.asarray float32, session.run
inline on the event loop, orjson dump. Anything the gateway does on top of this is what the benchmark prices.

Two forms of the same code: the issue's floor, a bare Starlette endpoint (the default), and `--asgi`, a plain ASGI
callable with no Starlette at all. The gateway's data plane skips Starlette's router and middleware
(gateway/data_plane.py), so the second shows what its own code costs without that advantage.

Run (repo root): python -m bench.floor_app --model lr=/path/lr.onnx --model rf=/path/rf.onnx --port 8000 [--asgi]
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

# The same onnxruntime options as the gateway, so the comparison measures only the HTTP and gateway layers.
from gateway.loader import session_options

READY_BODY = b'{"status":"ok"}'


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    input_name: str
    output_names: list[str]


def load_model(path: Path) -> LoadedModel:
    session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    return LoadedModel(session, session.get_inputs()[0].name, [o.name for o in session.get_outputs()])


def answer(models: Mapping[str, LoadedModel], name: str, body: bytes) -> tuple[int, bytes]:
    model = models.get(name)
    if model is None:
        return 404, orjson.dumps({"error": "unknown model"})
    payload = orjson.loads(body)
    batch = np.asarray(payload["inputs"], dtype=np.float32)
    raw = model.session.run(None, {model.input_name: batch})
    outputs = {output: value.tolist() for output, value in zip(model.output_names, raw, strict=True)}
    return 200, orjson.dumps({"outputs": outputs})


def create_app(model_paths: Mapping[str, Path]) -> Starlette:
    models = {name: load_model(path) for name, path in model_paths.items()}

    async def predict(request: Request) -> Response:
        status, body = answer(models, request.path_params["model"], await request.body())
        return Response(body, status_code=status, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(READY_BODY, media_type="application/json")

    return Starlette(routes=[Route("/predict/{model}", predict, methods=["POST"]), Route("/v2/health/ready", ready)])


def create_asgi_app(model_paths: Mapping[str, Path]) -> ASGIApp:
    """The same floor as one ASGI callable: POST /predict/{model} and GET /v2/health/ready, 404 for the rest."""
    models = {name: load_model(path) for name, path in model_paths.items()}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # served with lifespan="off": nothing else arrives
            return
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/predict/"):
            message = await receive()  # the benchmark's bodies arrive in one message
            status, body = answer(models, path[len("/predict/"):], message.get("body", b""))
        elif path == "/v2/health/ready":
            status, body = 200, READY_BODY
        else:
            status, body = 404, b'{"error":"not found"}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def parse_model_argument(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH.onnx, got {text!r}")
    return name, Path(path)


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve ONNX models with the least possible code (benchmark floor).")
    parser.add_argument("--model", type=parse_model_argument, action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--asgi", action="store_true", help="a plain ASGI app instead of a Starlette endpoint")
    args = parser.parse_args()
    app = (create_asgi_app if args.asgi else create_app)(dict(args.model))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            lifespan="off" if args.asgi else "auto")
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
