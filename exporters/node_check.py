"""The cross-runtime check: run the parity rows through the Node loader (onnxruntime-node) and compare its answers
with onnxruntime (Python), both formatted by modelstore.outputs.format_outputs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from exporters.onnx_model import run_model
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, NodeParityResult
from modelstore.outputs import format_outputs

SCORE_TOLERANCE = 1e-5
TIMEOUT_S = 120
SCRIPT = Path("bin") / "predict-rows.mjs"


def node_dir() -> Path:
    """$ONNXGATE_NODE_DIR, else the repository's node/ next to this package."""
    configured = os.environ.get("ONNXGATE_NODE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "node"


def node_unavailable_reason() -> str | None:
    directory = node_dir()
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (directory / SCRIPT).is_file():
        return f"{directory / SCRIPT} does not exist"
    if not (directory / "node_modules" / "onnxruntime-node").is_dir():
        return f"onnxruntime-node is not installed in {directory} (run npm install there)"
    return None


def check_node(store: Store, metadata: ModelMetadata, rows: dict) -> NodeParityResult:
    """`rows` is {"inputs": {name: nested list}} or, for text models, {"text": [...]}."""
    reason = node_unavailable_reason()
    if reason is not None:
        return NodeParityResult(checked=False, detail=reason)
    expected = format_outputs(metadata, _python_outputs(store, metadata, rows))
    try:
        answer = _run_node(store, metadata, rows)
    except NodeRunFailed as failure:
        return NodeParityResult(checked=True, passed=False, detail=str(failure))
    return compare_formatted(expected, answer.get("outputs", {}), version=_ort_node_version())


class NodeRunFailed(Exception):
    pass


def compare_formatted(expected: dict[str, list], actual: dict[str, list], *, version: str | None) -> NodeParityResult:
    problems: list[str] = []
    max_abs_diff = 0.0
    label_agreement = None
    for name, want in expected.items():
        if name not in actual:
            problems.append(f"Node returned no output {name!r}")
            continue
        want_array, got_array = np.asarray(want, dtype=object), np.asarray(actual[name], dtype=object)
        if want_array.shape != got_array.shape:
            problems.append(f"output {name!r}: Node shape {list(got_array.shape)}, Python {list(want_array.shape)}")
            continue
        if _is_numeric(want_array) and _is_numeric(got_array):
            diff = np.abs(want_array.astype(np.float64) - got_array.astype(np.float64))
            max_abs_diff = max(max_abs_diff, float(diff.max(initial=0.0)))
            if np.issubdtype(np.asarray(want).dtype, np.integer):
                label_agreement = _agreement(want_array == got_array)
        else:
            label_agreement = _agreement(want_array == got_array)
            if label_agreement < 1.0:
                problems.append(f"output {name!r}: Node and Python labels agree on {label_agreement:.1%} of rows")
    if max_abs_diff > SCORE_TOLERANCE:
        problems.append(f"max abs difference {max_abs_diff:.3g} between Node and Python exceeds {SCORE_TOLERANCE:g}")
    return NodeParityResult(checked=True, passed=not problems, onnxruntime_node=version, max_abs_diff=max_abs_diff,
                            label_agreement=label_agreement,
                            detail="; ".join(problems) if problems else "Node and Python outputs agree")


def _agreement(equal: np.ndarray) -> float:
    equal = np.asarray(equal, dtype=bool)
    if equal.ndim > 1:
        equal = equal.reshape(len(equal), -1).all(axis=1)
    return float(equal.mean()) if equal.size else 1.0


def _is_numeric(array: np.ndarray) -> bool:
    return all(isinstance(value, int | float) and not isinstance(value, bool) for value in array.ravel())


def _python_outputs(store: Store, metadata: ModelMetadata, rows: dict) -> dict[str, np.ndarray]:
    model_bytes = store.model_path(metadata.name, metadata.version).read_bytes()
    if "text" in rows:
        from exporters.tokenizer import load_tokenizer

        info = metadata.tokenizer
        tokenizer = load_tokenizer(store.version_dir(metadata.name, metadata.version) / info.file, info.max_length)
        ids, mask = tokenizer.encode(rows["text"])
        feeds = {info.input_ids: ids}
        if info.attention_mask:
            feeds[info.attention_mask] = mask
    else:
        feeds = {spec.name: np.asarray(rows["inputs"][spec.name], dtype=spec.dtype) for spec in metadata.inputs}
    return run_model(model_bytes, feeds)


def _run_node(store: Store, metadata: ModelMetadata, rows: dict) -> dict:
    directory = node_dir()
    with tempfile.TemporaryDirectory(prefix="onnxgate-node-") as tmp:
        rows_path = Path(tmp) / "rows.json"
        rows_path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        command = ["node", str(directory / SCRIPT), "--store", str(store.root), "--name", metadata.name,
                   "--version", metadata.version, "--rows", str(rows_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=directory)
        except subprocess.TimeoutExpired:
            raise NodeRunFailed(f"the Node loader did not answer within {TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise NodeRunFailed(f"the Node loader failed (exit {done.returncode}): {last[:300]}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise NodeRunFailed("the Node loader printed something that is not JSON") from None


def _ort_node_version() -> str | None:
    package = node_dir() / "node_modules" / "onnxruntime-node" / "package.json"
    try:
        return json.loads(package.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
