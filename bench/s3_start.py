"""How long a gateway takes to start serving a ~100 MB model from an S3-compatible bucket (cold cache) against from a
local disk (issue 16's goal: at most 2x).

One model, a dense layer whose weights are a 5120x5120 float32 initializer (~105 MB), published twice: into a file
store, and into a store whose artifacts are in a bucket of moto's standalone server on loopback (the writer's local
copy removed, so the gateway reads the bucket). Each run starts `onnxgate serve` as a process and times it until
/v2/health/ready answers 200 (the model loaded: sha256 checked, session built); a bucket run gets an empty cache
directory. Runs are interleaved (disk, bucket, disk, bucket, ...), and medians are compared.

    .venv/bin/python -m bench.s3_start --repeats 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from modelstore.deployments import Change, deploy
from modelstore.layout import Store, open_store
from modelstore.writer import publish
from tests.factories import free_port, minimal_metadata
from tests.s3_server import running_s3_server

MODEL, VERSION, ENVIRONMENT = "big", "v1.0.0", "bench"
FEATURES, WIDTH = 64, 5120
CHANGE = Change(actor="bench", reason="bench/s3_start.py")


def big_model() -> bytes:
    """X float32[batch, 64] -> MatMul 64x5120 -> Relu -> MatMul 5120x5120 -> y float32[batch, 5120]."""
    rng = np.random.default_rng(0)
    first = (rng.standard_normal((FEATURES, WIDTH), dtype=np.float32) / np.sqrt(FEATURES)).astype(np.float32)
    second = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W0"], ["m0"]), helper.make_node("Relu", ["m0"], ["h0"]),
         helper.make_node("MatMul", ["h0", "W1"], ["y"])],
        "big", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])],
        initializer=[numpy_helper.from_array(first, "W0"), numpy_helper.from_array(second, "W1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench.s3_start")
    model.ir_version = 9
    return model.SerializeToString()


def publish_big(store: Store, model: bytes) -> None:
    from modelstore.metadata import TensorSpec

    metadata = minimal_metadata(MODEL, VERSION, inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", FEATURES])],
                                outputs=[TensorSpec(name="y", dtype="float32", shape=["batch", WIDTH])], task="regression")
    publish(store, metadata, model, change=CHANGE, force=True)
    deploy(store, MODEL, VERSION, ENVIRONMENT, CHANGE)


def time_to_ready(store: Path, env: dict[str, str], artifacts: str | None, log: Path, timeout_s: float = 300) -> float:
    port = free_port()
    flags = ["--artifacts", artifacts] if artifacts else []
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    started = time.perf_counter()
    with open(log, "ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", ENVIRONMENT, "--port", str(port),
                                    "--store", str(store), *flags], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {process.returncode}; see {log}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the gateway was not ready within {timeout_s} s; see {log}")
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = big_model()
    print(f"model: {len(model) / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory(prefix="onnxgate-s3-start-") as tmp_name:
        tmp = Path(tmp_name)
        with running_s3_server(tmp / "moto.log") as server:
            os.environ.update(server.environment)  # the writer here, and every gateway below, reads these
            bucket_url = f"s3://{server.new_bucket()}/models"
            publish_big(Store(tmp / "local"), model)
            shared = open_store(tmp / "shared", artifacts_url=bucket_url)
            publish_big(shared, model)
            shutil.rmtree(shared.model_dir(MODEL))  # the writer's copy: the gateway reads the bucket
            shutil.rmtree(tmp / "shared" / ".cache", ignore_errors=True)
            base_env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
            times: dict[str, list[float]] = {"disk": [], "bucket": []}
            for repeat in range(args.repeats):
                order = ("disk", "bucket") if repeat % 2 == 0 else ("bucket", "disk")
                for target in order:
                    if target == "disk":
                        seconds = time_to_ready(tmp / "local", base_env, None, tmp / "disk.log")
                    else:
                        cache = tmp / f"cache-{repeat}"  # cold: nothing cached yet
                        seconds = time_to_ready(tmp / "shared", {**base_env, "ONNXGATE_CACHE_DIR": str(cache)},
                                                bucket_url, tmp / "bucket.log")
                        assert any(cache.iterdir()), "the bucket run cached nothing"
                    times[target].append(seconds)
                    print(f"run {repeat + 1} {target:6s} {seconds:6.2f} s", flush=True)
            disk, bucket = statistics.median(times["disk"]), statistics.median(times["bucket"])
            print(f"median to ready: disk {disk:.2f} s, bucket (cold cache) {bucket:.2f} s, "
                  f"ratio {bucket / disk:.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
