"""The gRPC floor: grpc.aio on uvloop (as the gateway runs it) answering ModelInfer with onnxruntime (the gateway's
session options), raw contents in and out, no validation, no metrics, no routing: what gRPC itself costs a request in
Python, beside which grpc_vs_http.py reads the gateway's own gRPC cost.

Run (repo root): python -m bench.grpc_floor --port N --model lr=PATH.onnx
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import uvloop
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.servers import HOST, REPO_ROOT, SERVER_CPU, RunningServer, ServerError, stop, tail
from gateway.loader import session_options


class FloorServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, sessions: dict[str, ort.InferenceSession]) -> None:
        self.sessions = sessions

    async def ModelInfer(self, request: service_pb2.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> service_pb2.ModelInferResponse:
        session = self.sessions[request.model_name]
        tensor = request.inputs[0]
        row = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(tuple(tensor.shape))
        outputs = session.run(None, {tensor.name: row})
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version="floor")
        for meta, value in zip(session.get_outputs(), outputs, strict=True):
            response.outputs.add(name=meta.name, datatype="FP32" if value.dtype == np.float32 else "INT64",
                                 shape=value.shape)
            response.raw_output_contents.append(value.tobytes())
        return response


async def serve(host: str, port: int, sessions: dict[str, ort.InferenceSession]) -> None:
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(FloorServicer(sessions), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    args = parser.parse_args()
    sessions = {}
    for spec in args.model:
        name, path = spec.split("=", 1)
        sessions[name] = ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])
    uvloop.run(serve(args.host, args.port, sessions))


if __name__ == "__main__":
    main()


@contextlib.contextmanager
def running_floor(model_paths: dict[str, Path], port: int, log_path: Path, timeout_s: float = 60.0) -> Iterator[RunningServer]:
    """The floor pinned to the server's core, as bench.servers.running starts the others; ready once its channel is."""
    command = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "bench.grpc_floor", "--host", HOST, "--port", str(port),
               *[arg for name, path in model_paths.items() for arg in ("--model", f"{name}={path}")]]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with grpc.insecure_channel(f"{HOST}:{port}") as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=timeout_s)
                except grpc.FutureTimeoutError:
                    raise ServerError(f"gRPC floor not ready after {timeout_s:.0f} s; log:\n{tail(log_path)}") from None
            yield RunningServer(f"{HOST}:{port}", process.pid)
        finally:
            stop(process)
