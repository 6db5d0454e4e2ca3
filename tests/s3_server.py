"""A real S3-compatible server for tests: moto's standalone server, started as a process on a loopback port, and
buckets made on it through boto3's public S3 API only (MinIO or AWS would do the same)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.factories import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "onnxgate-test", "AWS_SECRET_ACCESS_KEY": "onnxgate-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and any S3 client) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def client(self):
        from modelstore.s3_artifacts import s3_client

        return s3_client(endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                         region_name=CREDENTIALS["AWS_DEFAULT_REGION"])

    def new_bucket(self) -> str:
        bucket = f"onnxgate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket


def moto_command(port: int) -> list[str]:
    installed = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    return [installed, "-H", "127.0.0.1", "-p", str(port)] if installed else [
        sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@contextlib.contextmanager
def running_s3_server(log_path: Path, timeout_s: float = 60.0) -> Iterator[S3Server]:
    """Start moto's server on a free loopback port; yield it once it answers; stop it after."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(moto_command(port), stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **CREDENTIALS})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto's server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not answer on {endpoint} within {timeout_s} s") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
