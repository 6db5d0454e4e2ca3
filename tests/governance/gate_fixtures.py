"""Stores for the gate tests: real ONNX versions whose given metrics and sample counts the test chooses, a policy
file, and the CLI run as a user runs it (a real `onnxgate` process per command)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelstore.layout import Store
from modelstore.writer import publish
from tests.factories import store_flags
from tests.modelstore.conftest import tiny_classifier_onnx, tiny_metadata

GATE_EXIT = 7
POLICY_EXIT = 8

PRODUCTION_POLICY = """
[environments.staging]
min_metrics = { accuracy = 0.6 }

[environments.production]
min_metrics = { accuracy = 0.70, f1 = 0.65 }
min_training_samples = 10
approvals = 1
self_approval = false
requires = ["staging"]
rollback_approvals = 0
"""


def governed_store(root: Path, versions: dict[str, dict], policy: str | None = PRODUCTION_POLICY,
                   store: Store | None = None) -> Store:
    """versions: {"v1.0.0": {"metrics": {...}, "training_samples": 100}, ...} of one model named `tiny`, published
    into `store` (default: a file store at `root`); the policy file is written beside it, where the CLI reads it."""
    store = store if store is not None else Store(root)
    root.mkdir(parents=True, exist_ok=True)
    for index, (version, fields) in enumerate(versions.items()):
        metadata = tiny_metadata("tiny", version).model_copy(update=fields)
        publish(store, metadata, tiny_classifier_onnx(seed=index))
    if policy is not None:
        store.policy_path.write_text(policy)
    return store


def onnxgate(store: Store, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "onnxgate", *args, *store_flags(store)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def audit(store: Store, event: str | None = None) -> list[dict]:
    entries = store.registry.audit.entries()
    return [e for e in entries if event is None or e.get("event") == event]


def history(store: Store, *args: str) -> list[dict]:
    result = onnxgate(store, "history", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
