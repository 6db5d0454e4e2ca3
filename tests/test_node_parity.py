"""Drives the Node loader's own test suite (node --test) from pytest, so one test run covers both runtimes, and
checks the committed routing vectors against the Python reference."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_fixtures.routing import ROUTING_VECTORS_PATH, routing_vectors

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def test_committed_routing_vectors_match_hashlib() -> None:
    committed = json.loads(ROUTING_VECTORS_PATH.read_text(encoding="utf-8"))
    assert committed == routing_vectors()


def test_node_loader_suite_agrees_with_python() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("run `ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci` in node/ first")
    env = {**os.environ, "ONNXGATE_PYTHON": sys.executable}
    result = subprocess.run([node, "--test", "test/"], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith("# "))
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert "# fail 0" in summary, summary
