"""`onnxgate serve` with the dashboard as a user runs it (real processes): a session cookie from the login form
accepted by every worker, and `--ui-public` opening /ui without any tokens file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.admin.tokens import create_token
from tests.admin.conftest import DEADLINE_S, build_ops_store
from tests.factories import free_port, stop_server, wait_ready

pytestmark = pytest.mark.e2e


def serve(store_root: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--port", str(port),
                                "--store", str(store_root), *args], env=clean,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, f"http://127.0.0.1:{port}"


def test_a_login_holds_on_every_worker(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    tokens = tmp_path / "tokens.toml"
    secret = create_token(tokens, "oncall", "read")
    process, url = serve(store.root, "--workers", "2", "--admin-tokens", str(tokens))
    try:
        wait_ready(url, process, timeout_s=90)
        with httpx.Client(base_url=url, timeout=DEADLINE_S) as browser:
            assert browser.post("/ui/login", data={"token": secret}).status_code == 303
            cookie = browser.cookies["onnxgate_ui"]
        for _ in range(10):  # fresh connections spread over both workers: each accepts the session
            with httpx.Client(base_url=url, timeout=DEADLINE_S, cookies={"onnxgate_ui": cookie}) as fresh:
                page = fresh.get("/ui")
                assert page.status_code == 200 and "oncall · read" in page.text
            assert httpx.get(url + "/ui", timeout=DEADLINE_S).status_code == 401
    finally:
        stop_server(process)


def test_ui_public_needs_no_token(tmp_path: Path) -> None:
    store = build_ops_store(tmp_path / "models")
    process, url = serve(store.root, "--ui-public")
    try:
        wait_ready(url, process, timeout_s=90)
        page = httpx.get(url + "/ui", timeout=DEADLINE_S)
        assert page.status_code == 200 and 'data-model="iris" data-environment="production"' in page.text
        assert httpx.get(url + "/admin/v1/status", timeout=DEADLINE_S).status_code == 404
    finally:
        stop_server(process)
