"""`onnxgate serve` as a real process over the shared backends (--registry, --artifacts, its own --store directory
as a local cache), for the end-to-end tests of tests/shared_backends."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.factories import free_port, stop_server, wait_ready

READY_DEADLINE_S = 90.0


@contextlib.contextmanager
def serving(store_dir: Path, log_path: Path, *, registry_url: str | None = None, artifacts_url: str | None = None,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """A gateway serving `production` from `store_dir` (and the shared backends given); its base URL once ready.
    `env`: extra variables (the AWS ones for an object store)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ONNXGATE_", "AWS_"))}
    flags = [*(["--registry", registry_url] if registry_url else []),
             *(["--artifacts", artifacts_url] if artifacts_url else [])]
    store_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port",
                                    str(port), "--store", str(store_dir), *flags], env={**clean, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout_s=READY_DEADLINE_S)
        yield url
    finally:
        stop_server(process)
