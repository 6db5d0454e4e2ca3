"""metadata.json: what a model version is, how to call it, and what was checked when it was exported."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from modelstore.clock import utc_now
from modelstore.errors import InvalidMetadata

SCHEMA_VERSION = 1
BATCH_AXIS = "batch"

# Tensor element types both onnxruntime (Python) and onnxruntime-node accept, named as numpy names them.
TENSOR_DTYPES = ("float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "bool", "string")

Task = Literal["classification", "regression", "clustering", "transform", "text-classification", "other"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Model):
    """One named input or output. Shape entries are ints for fixed axes, strings for symbolic ones ("batch")."""

    name: str
    dtype: str
    shape: list[int | str | None]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


class ParityResult(_Model):
    """The source model against the ONNX model on the same rows."""

    passed: bool
    rows: int
    synthetic_rows: bool = Field(description="rows drawn from the signature because no sample was given")
    max_abs_diff: float | None = None
    label_agreement: float | None = None
    tolerance: float
    reference: str = Field(description="what the ONNX outputs were compared to, e.g. 'scikit-learn 1.6.1'")
    detail: str | None = None


class NodeParityResult(_Model):
    """The same parity rows run through the Node loader (onnxruntime-node)."""

    checked: bool
    passed: bool | None = None
    onnxruntime_node: str | None = None
    max_abs_diff: float | None = None
    label_agreement: float | None = None
    detail: str | None = None


class NodeCompatibility(_Model):
    compatible: bool
    opset: int
    max_opset: int
    problems: list[str] = Field(default_factory=list)
    node_parity: NodeParityResult | None = None


class FeatureStats(_Model):
    """One input feature of the training data: quantile bin edges and the rows in each bin (len(edges) - 1 bins,
    each [edge, next edge), the last one closed), over its finite values.

    Versions exported since drift monitoring also keep `quantiles` (the 0%, 1%, .., 100% quantiles) with the exact
    share of finite reference values at or below each (`cdf`) and strictly below each (`cdf_below`), so that a KS
    statistic can be computed against a live histogram (monitoring/drift.py). Older versions have none of them."""

    name: str
    bin_edges: list[float]
    counts: list[int]
    mean: float
    std: float
    min: float
    max: float
    quantiles: list[float] | None = None
    cdf: list[float] | None = None
    cdf_below: list[float] | None = None
    non_finite: int | None = Field(default=None, description="reference rows whose value is NaN or infinite")


class PredictionStats(_Model):
    """What the model answered on the reference rows: class shares (`kind` "classes": the values of `output`, as
    text, with their counts) or the distribution of a one-value-per-row score (`kind` "values": `value`)."""

    kind: Literal["classes", "values"]
    output: str
    rows: int
    classes: list[str] | None = None
    counts: list[int] | None = None
    value: FeatureStats | None = None


class ReferenceStats(_Model):
    available: bool
    reason: str | None = None
    input: str | None = None
    rows: int = 0
    features: list[FeatureStats] = Field(default_factory=list)
    prediction: PredictionStats | None = Field(default=None, description="the reference distribution of the "
                                               "model's outputs; versions exported before drift monitoring have none")
    prediction_reason: str | None = Field(default=None, description="why there is no `prediction`")


class TokenizerInfo(_Model):
    """A Hugging Face tokenizers `tokenizer.json` in the version directory, with how the model expects its ids."""

    file: str = "tokenizer.json"
    max_length: int
    padding: Literal["max_length"] = "max_length"
    truncation: bool = True
    pad_id: int = 0
    input_ids: str = "input_ids"
    attention_mask: str | None = None


class BatchingPolicy(_Model):
    """Adaptive batching of one version's concurrent requests (the gateway's gateway/batching.py): as given in
    metadata.json, only the fields set there override the gateway's default (ONNXGATE_BATCHING)."""

    enabled: bool = False
    max_batch_size: int = Field(default=32, ge=1, le=65536, description="rows in one joined session.run")
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=10_000, description="0: join only what is already "
                                      "waiting, never wait for more (Triton's default); >0: wait up to this long")

    def merged(self, override: BatchingPolicy | None) -> BatchingPolicy:
        """This policy with the fields `override` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class ModelMetadata(_Model):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    framework: str
    framework_version: str
    task: Task
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    model_file: str = "model.onnx"
    model_sha256: str
    model_size: int
    files: dict[str, str] = Field(default_factory=dict, description="other files in the version dir -> sha256")
    labels: list[str] | None = Field(default=None, description="class names, indexed by class id")
    label_output: str | None = Field(default=None, description="output holding class ids, mapped to labels")
    score_output: str | None = Field(default=None, description="output holding probabilities or scores")
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict, description="finite numbers only: JSON has no NaN")
    training_samples: int | None = None
    dataset_sha256: str | None = None
    created_at: str = Field(default_factory=lambda: utc_now())
    parity: ParityResult
    node_compatibility: NodeCompatibility
    reference_stats: ReferenceStats
    tokenizer: TokenizerInfo | None = None
    source: str | None = Field(default=None, description="what was exported: a file name or module path")
    batching: BatchingPolicy | None = Field(default=None, description="adaptive batching in the gateway; unset: the "
                                            "gateway's default")

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def signature_text(self) -> str:
        ins = "; ".join(s.describe() for s in self.inputs)
        outs = "; ".join(s.describe() for s in self.outputs)
        return f"inputs: {ins} -> outputs: {outs}"


def read_metadata(path: Path, display: str | None = None) -> ModelMetadata:
    """metadata.json at `path`; `display` names it in errors (default: the path)."""
    where = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidMetadata(f"{where}: metadata.json is missing") from None
    except OSError as exc:
        raise InvalidMetadata(f"{where}: cannot be read ({exc.strerror})") from None
    return parse_metadata(raw, where)


def parse_metadata(raw: bytes, where: str) -> ModelMetadata:
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidMetadata(f"{where}: invalid metadata at {location}: {first['msg']}") from None


def metadata_json(metadata: ModelMetadata) -> str:
    """Stable text: sorted keys and a trailing newline, so packages built from it are reproducible. Never a bare
    NaN or Infinity: they are not JSON, and the Node loader (JSON.parse) refuses the whole file over one."""
    # Files from before batching and drift statistics stay byte for byte: optional fields they lack are left out.
    payload = metadata.model_dump(mode="json", exclude=None if metadata.batching is not None else {"batching"})
    _drop_unset_drift_fields(payload["reference_stats"])
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


_DRIFT_FEATURE_FIELDS = ("quantiles", "cdf", "cdf_below", "non_finite")


def _drop_unset_drift_fields(stats: dict) -> None:
    for key in ("prediction", "prediction_reason"):
        if stats.get(key) is None:
            stats.pop(key, None)
    features = list(stats.get("features", []))
    prediction = stats.get("prediction")
    if prediction and prediction.get("value"):
        features.append(prediction["value"])
    for feature in features:
        for key in _DRIFT_FEATURE_FIELDS:
            if feature.get(key) is None:
                feature.pop(key, None)


def check_metrics(metrics: Mapping[str, float], where: str) -> dict[str, float]:
    """Metrics as metadata.json and registry.json keep them: finite numbers (NaN and Infinity are not JSON)."""
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidMetadata(f"{where}: metric {key!r} is {value!r}; metrics must be finite numbers")
    return {str(key): float(value) for key, value in metrics.items()}
