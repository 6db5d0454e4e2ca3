"""Loading one model version: read its files, check each against metadata's sha256 on the bytes actually loaded,
build a tuned onnxruntime session, and measure what a run costs so the service knows whether to run it inline."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from gateway.metrics import GatewayMetrics, ModelMetrics
from gateway.text import TextEncoder
from gateway.validation import InputSpec
from modelstore.backends import ArtifactStore
from modelstore.errors import InvalidMetadata
from modelstore.layout import check_sha256
from modelstore.metadata import ModelMetadata

if TYPE_CHECKING:
    from gateway.batching import Batcher
    from gateway.drift_window import DriftWindow

COST_SAMPLE_ROWS = 32
COST_REPEATS = 5


@dataclass(eq=False)
class LoadedModel:
    metadata: ModelMetadata
    session: ort.InferenceSession
    inputs: dict[str, InputSpec]
    output_names: list[str]
    signature: str
    stamp: str  # the artifact store's version_stamp when the files were read: a change means reload
    load_seconds: float
    text: TextEncoder | None = None
    base_cost_s: float = float("inf")
    row_cost_s: float = 0.0
    metrics: dict[str, ModelMetrics] = field(default_factory=dict)
    batcher: Batcher | None = None  # set by the service when the version's batching policy is enabled
    # set by the service when live drift watches the version: its window per served environment
    drift: dict[str, DriftWindow] | None = None
    _run_session: Callable[..., list] | None = field(default=None, repr=False)
    single_input: InputSpec | None = field(init=False, default=None)  # the input of a model that has one
    # the metadata's, read on every request: plain attributes, not a pydantic model's attribute hook each time
    name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.metadata.name
        self.version = self.metadata.version
        if len(self.inputs) == 1:
            [self.single_input] = self.inputs.values()
        # onnxruntime's Python wrapper re-checks on every run what decoding has checked (input names) and what the
        # gateway never uses (OrtValues, WebGPU graph capture, provider fallback): its compiled session is called
        # directly, where there is one
        compiled = getattr(self.session, "_sess", None)
        self._run_session = compiled.run if compiled is not None else self.session.run

    def estimated_cost_s(self, rows: int) -> float:
        return self.base_cost_s + self.row_cost_s * rows

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        names = output_names or self.output_names
        return dict(zip(names, self._run_session(names, feeds, None), strict=True))

    def metrics_for(self, metrics: GatewayMetrics, environment: str) -> ModelMetrics:
        children = self.metrics.get(environment)
        if children is None:
            children = self.metrics[environment] = metrics.for_model(self.metadata, environment)
        return children


def session_options() -> ort.SessionOptions:
    """Tuned for many small concurrent requests: one thread per run, no spinning threads burning idle cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 4  # errors reach us as exceptions, mapped and logged once by the gateway
    return options


def load_model(store: ArtifactStore, name: str, version: str, *, cost_limit_s: float) -> LoadedModel:
    """Read, verify and load one version. The sha256 is checked on the very bytes handed to onnxruntime."""
    started = time.perf_counter()
    stamp = store.version_stamp(name, version)
    metadata = store.read_metadata(name, version)
    where = f"{name} {version}"
    if (metadata.name, metadata.version) != (name, version):
        raise InvalidMetadata(f"{where}: metadata.json describes {metadata.name} {metadata.version}")
    model_bytes = read_verified(store, metadata, metadata.model_file, metadata.model_sha256)
    extra = {file_name: read_verified(store, metadata, file_name, digest) for file_name, digest in metadata.files.items()}
    try:
        session = ort.InferenceSession(model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
        raise InvalidMetadata(f"{where} {metadata.model_file}: onnxruntime refused the model: {exc}") from None
    try:
        inputs = {spec.name: InputSpec.from_tensor_spec(spec) for spec in metadata.inputs}
    except TypeError as exc:  # numpy's answer to a dtype name it does not know
        raise InvalidMetadata(f"{where}: metadata.json declares an input dtype onnxgate cannot serve: {exc}") from None
    check_session_matches(session, metadata, where)
    text = None
    if metadata.tokenizer is not None:
        if metadata.tokenizer.file not in extra:
            raise InvalidMetadata(f"{where}: tokenizer file {metadata.tokenizer.file!r} is not listed in files")
        text = TextEncoder(extra[metadata.tokenizer.file], metadata)
    loaded = LoadedModel(
        metadata=metadata,
        session=session,
        inputs=inputs,
        output_names=[spec.name for spec in metadata.outputs],
        signature=metadata.signature_text(),
        stamp=stamp,
        load_seconds=0.0,
        text=text,
    )
    loaded.base_cost_s, loaded.row_cost_s = measure_cost(loaded, cost_limit_s)
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def read_verified(store: ArtifactStore, metadata: ModelMetadata, file_name: str, digest: str) -> bytes:
    return check_sha256(store.read_file(metadata.name, metadata.version, file_name), digest,
                        f"{metadata.name} {metadata.version} {file_name}")


def check_session_matches(session: ort.InferenceSession, metadata: ModelMetadata, where: str) -> None:
    graph_inputs = {i.name for i in session.get_inputs()}
    graph_outputs = {o.name for o in session.get_outputs()}
    declared_inputs = {s.name for s in metadata.inputs}
    missing_outputs = {s.name for s in metadata.outputs} - graph_outputs
    if graph_inputs != declared_inputs or missing_outputs:
        raise InvalidMetadata(
            f"{where}: metadata signature does not match the graph "
            f"(graph inputs {sorted(graph_inputs)}, metadata inputs {sorted(declared_inputs)}, "
            f"outputs missing from graph {sorted(missing_outputs)})"
        )
    declared = {s.name: s.dtype for s in metadata.inputs}
    for graph_input in session.get_inputs():
        takes = ORT_TENSOR_DTYPES.get(graph_input.type)
        if takes is not None and takes != declared[graph_input.name]:
            raise InvalidMetadata(f"{where}: metadata says input {graph_input.name!r} is "
                                  f"{declared[graph_input.name]}, the graph takes {takes}")


ORT_TENSOR_DTYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16", "tensor(bool)": "bool",
    "tensor(string)": "string", **{f"tensor({kind})": kind for kind in (
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")},
}
"""onnxruntime's names of the element types metadata.json names as numpy does (modelstore.metadata.TENSOR_DTYPES)."""


def measure_cost(loaded: LoadedModel, cost_limit_s: float) -> tuple[float, float]:
    """(seconds per run, extra seconds per row), from runs on zero inputs of 1 and COST_SAMPLE_ROWS rows.

    Stops early once a run is clearly over `cost_limit_s * 10`: such a model runs on a thread whatever the rows,
    and measuring a slow model further would only delay its loading. A model that cannot run on zeros runs on a
    thread too.
    """
    try:
        one = _best_time(loaded, _zero_feeds(loaded, 1), cost_limit_s * 10)
        if one > cost_limit_s * 10:
            return one, 0.0
        many = _best_time(loaded, _zero_feeds(loaded, COST_SAMPLE_ROWS), cost_limit_s * 10)
    except Exception:  # noqa: BLE001 - any failure here only means "not measured"
        return float("inf"), 0.0
    per_row = max(0.0, (many - one) / (COST_SAMPLE_ROWS - 1))
    return max(0.0, one - per_row), per_row


def _best_time(loaded: LoadedModel, feeds: dict[str, np.ndarray], give_up_s: float) -> float:
    loaded.run(feeds)  # first run allocates; not representative
    best = float("inf")
    for _ in range(COST_REPEATS):
        started = time.perf_counter()
        loaded.run(feeds)
        best = min(best, time.perf_counter() - started)
        if best > give_up_s:
            break
    return best


def _zero_feeds(loaded: LoadedModel, rows: int) -> dict[str, np.ndarray]:
    feeds = {}
    text_length = loaded.text.info.max_length if loaded.text else 1
    for spec in loaded.metadata.inputs:
        shape = [rows if axis == 0 else (size if isinstance(size, int) and size >= 0 else text_length)
                 for axis, size in enumerate(spec.shape)]
        dtype = loaded.inputs[spec.name].dtype
        feeds[spec.name] = np.full(shape, "", dtype=object) if dtype.kind == "O" else np.zeros(shape, dtype=dtype)
    return feeds
