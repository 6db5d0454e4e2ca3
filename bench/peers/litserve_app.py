"""LitServe peer: one LitAPI per model (its docs' multi-model form), `setup` loads the ONNX file with onnxruntime.

LitServer on CPU with one inference worker (`workers_per_device=1`) and one API server process (`num_api_servers=1`),
each LitAPI at `/predict/{model}`; LitServe's health check answers at the harness's ready path once the workers are set
up. `--fast-queue` swaps its default multiprocessing queues for ZeroMQ. Runs in bench/.litserve-venv (bench/peers/litserve.txt):

ONNXGATE_BENCH_MODELS='{"lr": "/path/lr.onnx"}' bench/.litserve-venv/bin/python bench/peers/litserve_app.py --port 8000
"""
from __future__ import annotations

import argparse

import litserve as ls
from onnx_model import READY_PATH, OnnxModel, model_paths


class OnnxLitAPI(ls.LitAPI):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(api_path=f"/predict/{name}")
        self.path = path

    def setup(self, device: str) -> None:
        self.model = OnnxModel(self.path)

    def decode_request(self, request: dict) -> list:
        return request["inputs"]

    def predict(self, rows: list) -> dict:
        return self.model.predict(rows)

    def encode_response(self, output: dict) -> dict:
        return output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fast-queue", action="store_true", help="ZeroMQ between the API server and the worker, which "
                        "LitServer's docs advise above 100 requests/s (default: multiprocessing queues)")
    args = parser.parse_args()
    apis = [OnnxLitAPI(name, str(path)) for name, path in model_paths().items()]
    server = ls.LitServer(apis, accelerator="cpu", workers_per_device=1, healthcheck_path=READY_PATH,
                          fast_queue=args.fast_queue)
    server.run(host=args.host, port=args.port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
