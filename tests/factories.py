"""Factories for tests: tiny real ONNX models (onnx.helper graphs), published into real stores, and a real uvicorn
server on a free loopback port. Expected outputs are computed here with numpy from the same weights, never hard-coded.
"""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Self

import httpx
import numpy as np
import onnx
import uvicorn
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from modelstore.deployments import Change, Deploy, deploy
from modelstore.layout import Store
from modelstore.metadata import (
    BatchingPolicy,
    ModelMetadata,
    NodeCompatibility,
    ParityResult,
    ReferenceStats,
    TensorSpec,
    TokenizerInfo,
)
from modelstore.transitions import transition
from modelstore.writer import publish

if TYPE_CHECKING:
    import pytest

OPSET = 17
IR_VERSION = 9
IRIS_LABELS = ("setosa", "versicolor", "virginica")
TEXT_VOCAB = ("[PAD]", "[UNK]", "good", "great", "fine", "bad", "awful", "poor", "the", "movie", "was")
TEXT_LABELS = ("negative", "positive")


def make_store(root: Path) -> Store:
    root.mkdir(parents=True, exist_ok=True)
    return Store(root)


def make_pg_store(root: Path, registry_url: str) -> Store:
    """A store with its artifacts under `root` and its registry in the PostgreSQL database at `registry_url`."""
    from modelstore.pg_registry import PgRegistry  # the postgres extra

    root.mkdir(parents=True, exist_ok=True)
    return Store(root, registry_backend=PgRegistry(registry_url))


def model_bytes(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.factories")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def minimal_metadata(name: str, version: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                     **fields: object) -> ModelMetadata:
    """Honest minimal values: no parity run, no reference data; sha256 and size are sealed by the writer."""
    return ModelMetadata(
        name=name, version=version, framework="onnx", framework_version=onnx.__version__,
        task=fields.pop("task", "other"), opset=OPSET, inputs=inputs, outputs=outputs,
        model_sha256="", model_size=0,
        parity=ParityResult(passed=True, rows=0, synthetic_rows=True, tolerance=0.0, reference="none (test model)"),
        node_compatibility=NodeCompatibility(compatible=True, opset=OPSET, max_opset=OPSET),
        reference_stats=ReferenceStats(available=False, reason="test model"),
        source="tests/factories.py", **fields,
    )


# -- a linear classifier: X -> softmax(X W + b) and argmax -------------------------------------------------------

def classifier_weights(seed: int, n_features: int = 4, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_features, n_classes)).astype(np.float32),
            rng.normal(size=(n_classes,)).astype(np.float32))


def classifier_expected(weights: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label ids, probabilities) computed with numpy from the weights the model was built with."""
    logits = rows.astype(np.float32) @ weights[0] + weights[1]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits.argmax(axis=1), exp / exp.sum(axis=1, keepdims=True)


def classifier_onnx(weights: tuple[np.ndarray, np.ndarray], noise: tuple[list, list] | None = None) -> bytes:
    """softmax(X W + b) and argmax. `noise` = (nodes, initializers) computing a tensor named "noise" from X that is
    added to the logits: the rollout tests make it zero but costly (slow_work) or failing on some inputs (poison)."""
    w, b = weights
    extra_nodes, extra_initializers = noise or ([], [])
    logits = [helper.make_node("Add", ["xw", "B"], ["logits"])]
    if noise is not None:
        logits = [helper.make_node("Add", ["xw", "B"], ["clean_logits"]),
                  helper.make_node("Add", ["clean_logits", "noise"], ["logits"])]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            *extra_nodes,
            *logits,
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", w.shape[0]])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", w.shape[1]])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"), *extra_initializers],
    )
    return model_bytes(graph)


def _constant(name: str, values: object, dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def slow_work(n_features: int, iterations: int, width: int = 256) -> tuple[list, list]:
    """noise = 0 * sum(h), where h goes through `iterations` rounds of tanh(h @ M) in an ONNX Loop: real work that
    scales with `iterations` and changes no answer."""
    rng = np.random.default_rng(11)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["h_in", "M"], ["hm"]),
         helper.make_node("Tanh", ["hm"], ["h_out"])],
        "rounds",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", width])],
    )
    nodes = [
        helper.make_node("MatMul", ["X", "H0"], ["h0"]),
        helper.make_node("Loop", ["rounds", "", "h0"], ["h_last"], body=body),
        helper.make_node("ReduceSum", ["h_last", "axis1"], ["h_sum"], keepdims=1),
        helper.make_node("Mul", ["h_sum", "zero"], ["noise"]),
    ]
    initializers = [
        numpy_helper.from_array((rng.normal(size=(n_features, width)) / 2).astype(np.float32), "H0"),
        numpy_helper.from_array((rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32), "M"),
        _constant("rounds", iterations), _constant("axis1", [1]), _constant("zero", 0.0, np.float32),
    ]
    return nodes, initializers


def poison(threshold: float = 9.5) -> tuple[list, list]:
    """noise = 0, except that a batch whose first feature exceeds `threshold` makes a Reshape fail (onnxruntime's
    FAIL status at run time): X [batch, F] is reshaped to [-1, 1], or [-1, 3] when poisoned, which a batch of one
    row of 4 features cannot take."""
    nodes = [
        helper.make_node("Slice", ["X", "start0", "end1", "axis1"], ["first"]),
        helper.make_node("ReduceMax", ["first"], ["top"], keepdims=0),
        helper.make_node("Greater", ["top", "threshold"], ["poisoned"]),
        helper.make_node("Cast", ["poisoned"], ["poisoned_int"], to=TensorProto.INT64),
        helper.make_node("Mul", ["poisoned_int", "two"], ["bump"]),
        helper.make_node("Add", ["bump", "one"], ["columns"]),
        helper.make_node("Reshape", ["columns", "one_dim"], ["columns_1d"]),
        helper.make_node("Concat", ["minus_one", "columns_1d"], ["shape"], axis=0),
        helper.make_node("Reshape", ["X", "shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["noise"]),
    ]
    initializers = [
        _constant("start0", [0]), _constant("end1", [1]), _constant("axis1", [1]),
        _constant("threshold", threshold, np.float32), _constant("two", 2), _constant("one", 1),
        _constant("one_dim", [1]), _constant("minus_one", [-1]), _constant("zero", 0.0, np.float32),
    ]
    return nodes, initializers


def publish_classifier(store: Store, name: str = "iris", version: str = "v1.0.0", *, seed: int = 0,
                       n_features: int = 4, labels: Sequence[str] = IRIS_LABELS,
                       noise: tuple[list, list] | None = None,
                       weights: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Publish a linear classifier (random weights from `seed`, unless `weights` are given); returns its weights (to
    compute expected answers)."""
    weights = classifier_weights(seed, n_features, len(labels)) if weights is None else weights
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", n_features])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                 TensorSpec(name="probabilities", dtype="float32", shape=["batch", len(labels)])],
        task="classification", labels=list(labels), label_output="label", score_output="probabilities",
    )
    publish(store, metadata, classifier_onnx(weights, noise), change=Change(actor="tests"))
    return weights


# -- a classifier whose metadata holds reference statistics of its training rows (live and offline drift) ----------

WATCHED_FEATURES = ["length", "width", "depth", "weight"]
WATCHED_REFERENCE_ROWS = 5000


def training_rows(seed: int, rows: int = WATCHED_REFERENCE_ROWS) -> np.ndarray:
    """Rows of the watched classifiers' training distribution: feature i ~ Normal(i, 1 + i / 2), independent."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.normal(index, 1 + index / 2, size=rows) for index in range(len(WATCHED_FEATURES))],
                    axis=1).astype(np.float32)


def publish_watched_classifier(store: Store, name: str = "watched", version: str = "v1.0.0", *,
                               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """publish_classifier's model, with reference statistics of WATCHED_REFERENCE_ROWS training rows (seed 0) and of
    its answers on them, as `onnxgate export --reference-data` keeps them."""
    from exporters.stats import prediction_stats, reference_stats

    weights = classifier_weights(seed, len(WATCHED_FEATURES), len(IRIS_LABELS))
    reference = training_rows(0)
    labels, probabilities = classifier_expected(weights, reference)
    prediction, why_not = prediction_stats({"label": labels, "probabilities": probabilities}, label_output="label",
                                           score_output="probabilities")
    stats = reference_stats(reference, "X", feature_names=WATCHED_FEATURES).model_copy(
        update={"prediction": prediction, "prediction_reason": why_not})
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", len(WATCHED_FEATURES)])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                 TensorSpec(name="probabilities", dtype="float32", shape=["batch", len(IRIS_LABELS)])],
        task="classification", labels=list(IRIS_LABELS), label_output="label", score_output="probabilities",
    ).model_copy(update={"reference_stats": stats})
    publish(store, metadata, classifier_onnx(weights), change=Change(actor="tests"))
    return weights


# -- two named inputs of different dtypes --------------------------------------------------------------------------

def publish_two_input(store: Store, name: str = "pair", version: str = "v1.0.0") -> None:
    """sum = a + float(b), with a: float32[batch, 2] and b: int64[batch, 2]."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["a", "b_float"], ["sum"])],
        "pair",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 2])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 2])],
    )
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="a", dtype="float32", shape=["batch", 2]),
                TensorSpec(name="b", dtype="int64", shape=["batch", 2])],
        outputs=[TensorSpec(name="sum", dtype="float32", shape=["batch", 2])],
        task="transform",
    )
    publish(store, metadata, model_bytes(graph), change=Change(actor="tests"))


# -- identity over many element types (for the v2 datatypes) -------------------------------------------------------

IDENTITY_DTYPES = {"bool": TensorProto.BOOL, "int8": TensorProto.INT8, "int16": TensorProto.INT16,
                   "int32": TensorProto.INT32, "int64": TensorProto.INT64, "uint8": TensorProto.UINT8,
                   "uint16": TensorProto.UINT16, "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64,
                   "float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
                   "string": TensorProto.STRING}


def publish_identity(store: Store, name: str = "echo", version: str = "v1.0.0", *,
                     dtypes: Sequence[str] = tuple(IDENTITY_DTYPES)) -> None:
    """One input per element type (default: every one), `in_<dtype>` [batch, 2] -> `out_<dtype>` unchanged."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{d}"], [f"out_{d}"]) for d in dtypes],
        "echo",
        [helper.make_tensor_value_info(f"in_{d}", IDENTITY_DTYPES[d], ["batch", 2]) for d in dtypes],
        [helper.make_tensor_value_info(f"out_{d}", IDENTITY_DTYPES[d], ["batch", 2]) for d in dtypes],
    )
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name=f"in_{d}", dtype=d, shape=["batch", 2]) for d in dtypes],
        outputs=[TensorSpec(name=f"out_{d}", dtype=d, shape=["batch", 2]) for d in dtypes],
        task="transform",
    )
    publish(store, metadata, model_bytes(graph), change=Change(actor="tests"))


# -- a text classifier with a word-level tokenizer -----------------------------------------------------------------

def text_tokenizer_json(max_length: int) -> bytes:
    tokenizer = Tokenizer(WordLevel({word: i for i, word in enumerate(TEXT_VOCAB)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tokenizer.to_str().encode()


def text_embedding() -> np.ndarray:
    """Per-token (negative, positive) scores: positive words lean positive, negative words negative."""
    table = np.zeros((len(TEXT_VOCAB), 2), dtype=np.float32)
    for index, word in enumerate(TEXT_VOCAB):
        if word in ("good", "great", "fine"):
            table[index] = (0.0, 1.0 + index / 10)
        elif word in ("bad", "awful", "poor"):
            table[index] = (1.0 + index / 10, 0.0)
    return table


def text_expected(texts: Sequence[str], max_length: int) -> np.ndarray:
    """Label ids computed from the tokenizer and the embedding, independently of the gateway."""
    tokenizer = Tokenizer.from_str(text_tokenizer_json(max_length).decode())
    table = text_embedding()
    ids = np.array([e.ids for e in tokenizer.encode_batch(list(texts))])
    mask = np.array([e.attention_mask for e in tokenizer.encode_batch(list(texts))], dtype=np.float32)
    logits = (table[ids] * mask[..., None]).sum(axis=1)
    return logits.argmax(axis=1)


def publish_text_classifier(store: Store, name: str = "sentiment", version: str = "v1.0.0", *,
                            max_length: int = 8, batching: BatchingPolicy | None = None) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["embedded"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask_float", "last_axis"], ["mask3"]),
            helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "seq_axis"], ["logits"], keepdims=0),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "sentiment",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", max_length]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", max_length])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(text_embedding(), "E"),
                     numpy_helper.from_array(np.array([2], dtype=np.int64), "last_axis"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis")],
    )
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="input_ids", dtype="int64", shape=["batch", max_length]),
                TensorSpec(name="attention_mask", dtype="int64", shape=["batch", max_length])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                 TensorSpec(name="probabilities", dtype="float32", shape=["batch", 2])],
        task="text-classification", labels=list(TEXT_LABELS), label_output="label", score_output="probabilities",
        tokenizer=TokenizerInfo(max_length=max_length, pad_id=0, attention_mask="attention_mask"), batching=batching,
    )
    publish(store, metadata, model_bytes(graph), {"tokenizer.json": text_tokenizer_json(max_length)},
            change=Change(actor="tests"))


# -- a heavier model (for measuring inline vs thread dispatch) -----------------------------------------------------

def publish_mlp(store: Store, name: str = "mlp", version: str = "v1.0.0", *, width: int = 512, layers: int = 4,
                n_features: int = 64, batching: BatchingPolicy | None = None) -> None:
    """X float32[batch, n_features] -> `layers` dense ReLU layers of `width` -> y float32[batch, width]."""
    rng = np.random.default_rng(7)
    nodes, initializers, previous, size = [], [], "X", n_features
    for layer in range(layers):
        weight = (rng.normal(size=(size, width)) / np.sqrt(size)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"W{layer}"))
        out = "y" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [previous, f"W{layer}"], [f"m{layer}"]))
        nodes.append(helper.make_node("Relu", [f"m{layer}"], [out]))
        previous, size = out, width
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=initializers,
    )
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", n_features])],
        outputs=[TensorSpec(name="y", dtype="float32", shape=["batch", width])],
        task="regression", batching=batching,
    )
    publish(store, metadata, model_bytes(graph), change=Change(actor="tests"))


def mlp_expected(rows: np.ndarray, *, width: int = 512, layers: int = 4, n_features: int = 64) -> np.ndarray:
    """publish_mlp's answers for `rows`, computed with numpy from the same weights."""
    rng = np.random.default_rng(7)
    hidden, size = rows.astype(np.float32), n_features
    for _ in range(layers):
        weight = (rng.normal(size=(size, width)) / np.sqrt(size)).astype(np.float32)
        hidden, size = np.maximum(hidden @ weight, 0), width
    return hidden


# -- a model whose inputs have a free axis besides the batch ----------------------------------------------------------

def publish_row_sum(store: Store, name: str = "rowsum", version: str = "v1.0.0") -> None:
    """X float32[batch, width] (any width) -> total float32[batch], the sum of each row."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X", "axis1"], ["total"], keepdims=0)],
        "rowsum",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"])],
        initializer=[_constant("axis1", [1])],
    )
    metadata = minimal_metadata(
        name, version,
        inputs=[TensorSpec(name="X", dtype="float32", shape=["batch", "width"])],
        outputs=[TensorSpec(name="total", dtype="float32", shape=["batch"])],
        task="transform",
    )
    publish(store, metadata, model_bytes(graph), change=Change(actor="tests"))


def deploy_version(store: Store, name: str, version: str, environment: str = "production") -> str | None:
    return deploy(store, name, version, environment, Change(actor="tests", reason="test deploy"))


class UnverifiedDeploy(Deploy):
    def prepare(self, store: Store) -> Deploy:
        return self


def deploy_unverified(store: Store, name: str, version: str, environment: str = "production") -> None:
    """What the gateway sees when files change after `deploy` verified them: the registry points at the version."""
    transition(store, UnverifiedDeploy(name, environment, version), Change(actor="tests"))


# -- breaking a store by hand, as a disk, an editor or an operator does ----------------------------------------------

def put_non_utf8_byte(path: Path) -> None:
    """One byte that is not UTF-8, inside a JSON string of `path`; the rest of the file is intact."""
    raw = path.read_bytes()
    assert b'"classification"' in raw
    path.write_bytes(raw.replace(b'"classification"', b'"classific\xffation"', 1))


def edit_registry(store: Store, edit: Callable[[dict], None]) -> None:
    """A hand edit of registry.json, as an operator with an editor makes it: no lock, no audit entry."""
    registry = json.loads(store.registry_path.read_bytes())
    edit(registry)
    store.registry_path.write_text(json.dumps(registry, indent=2))


# -- a real server ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running_server(app: object, host: str = "127.0.0.1", timeout_s: float = 30.0) -> Iterator[str]:
    """Start uvicorn with `app` on a free port in a thread (uvicorn's own test pattern); yield its base URL."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def free_port() -> int:
    """A loopback port free right now (for a server in another process, which binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "server exited"
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not become ready")


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl-C (uvicorn's graceful shutdown), then kill if it has not exited within 15 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class ClientThreads:
    """Client threads that load a server while a `with` block runs: each calls `_run(*args)` for one entry of `runs`
    and should loop until `stopped()`. Subclasses say what a client sends and keep what it sees; `errors` collects
    transport failures."""

    join_s = 10.0

    def __init__(self, url: str, runs: Sequence[tuple]) -> None:
        self.url = url
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=args, daemon=True) for args in runs]

    def _run(self, *args: object) -> None:
        raise NotImplementedError

    def stopped(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.join_s)


# -- a real webhook receiver ----------------------------------------------------------------------------------------

class WebhookReceiver:
    """A tiny real HTTP server on loopback (http.server, in a thread) that records every POST: path, headers, body.
    `statuses[path]`: answers to give, in order, before 200; `hold`: cleared, requests wait for it to be set again.
    Started on `port` (default: a free one) by `start`; `stop` closes it, and a `start` later reopens the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: dict[str, list[int]] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.waiting = threading.Event()  # a request is held at `hold`
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not receiver.hold.is_set():
                    receiver.waiting.set()
                    receiver.hold.wait(60)
                with receiver._lock:
                    queued = receiver.statuses.get(self.path) or []
                    status = queued.pop(0) if queued else 200
                    if status == 200:
                        receiver.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.hold.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def bodies(self, path: str) -> list[dict]:
        with self._lock:
            return [json.loads(body) for got, _, body in self.received if got == path]

    def requests(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [(headers, body) for got, headers, body in self.received if got == path]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(condition: Callable[[], object], timeout_s: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.02)


def make_shared_store(root: Path, registry_url: str, artifacts_url: str) -> Store:
    """A store with its registry in the PostgreSQL database at `registry_url` and its versions' files in the object
    store at `artifacts_url` (s3://bucket/prefix); `root` holds only local copies and the verified cache."""
    from modelstore.layout import open_store

    root.mkdir(parents=True, exist_ok=True)
    return open_store(root, registry_url=registry_url, artifacts_url=artifacts_url)


BACKENDS = ("file", "shared")


@contextlib.contextmanager
def backend_store(backend: str, root: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    """An empty store of `backend` for a fixture of any scope: "file", a directory at `root`; "shared", its registry
    in a fresh database of the session's PostgreSQL and its versions' files in a fresh bucket of the session's
    S3-compatible server, with the AWS variables pointing at that server while the store is open."""
    import pytest  # bench/ imports these factories without the test tools

    if backend == "file":
        yield make_store(root)
        return
    postgres, s3_server = request.getfixturevalue("postgres"), request.getfixturevalue("s3_server")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in s3_server.environment.items():
            patch.setenv(key, value)
        store = make_shared_store(root, postgres.create_database(), f"s3://{s3_server.new_bucket()}/models")
        try:
            yield store
        finally:
            store.close()


def store_flags(store: Store) -> list[str]:
    """The command-line flags that name `store`: --store, and --registry / --artifacts for its shared backends."""
    flags = ["--store", str(store.root)]
    if store.registry_backend is not None:
        flags += ["--registry", store.registry_backend.url]
    if store.artifacts is not None:
        flags += ["--artifacts", store.artifacts.location.url(store.artifacts.location.prefix)]
    return flags
