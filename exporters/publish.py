"""The orchestration: convert -> Node-compatibility check -> parity -> statistics -> metadata -> Node check -> publish.

One public function per kind of source; each builds a Candidate (the ONNX model, the rows it was checked on and what
the source model answered) and hands it to `finish`, which runs the shared checks and writes the version.
"""
from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from exporters.compat import check_compatibility, require_compatible
from exporters.errors import ExportError, NodeParityError
from exporters.node_check import check_node
from exporters.onnx_file import OnnxFile, guess_outputs, read_onnx_file
from exporters.onnx_model import run_model, signature
from exporters.parity import DEFAULT_TOLERANCE, compare_outputs, require_parity
from exporters.sample import Sample, dataset_sha256, synthetic_rows
from exporters.source import Source, load_source
from exporters.stats import prediction_stats, reference_stats, token_count_stats
from exporters.tokenizer import TOKENIZER_FILE, FixedLengthTokenizer, load_tokenizer
from modelstore.deployments import Change
from modelstore.errors import DuplicateVersion
from modelstore.layout import Store
from modelstore.metadata import (
    ModelMetadata,
    NodeParityResult,
    ParityResult,
    ReferenceStats,
    Task,
    TensorSpec,
    TokenizerInfo,
    check_metrics,
)
from modelstore.versions import check_name, check_version
from modelstore.writer import publish, write_version

NODE_CHECK_ROWS = 32
REFERENCE_CHUNK_ROWS = 65536  # reference rows run through the model this many at a time

__all__ = ["Candidate", "PublishOptions", "export_onnx_file", "export_sklearn", "export_source", "export_torch",
           "finish", "load_source"]


@dataclass(frozen=True)
class PublishOptions:
    """What every export takes besides the model: where it goes, what is recorded, which checks may be skipped."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    training_samples: int | None = None
    training_data: np.ndarray | None = None  # rows the reference statistics describe (default: the sample's)
    training_feature_names: list[str] | None = None  # their column names, e.g. a CSV header
    tolerance: float = DEFAULT_TOLERANCE
    allow_incompatible: bool = False
    check_node: bool = True
    change: Change = Change()
    force: bool = False


@dataclass
class Candidate:
    model: onnx.ModelProto
    framework: str
    framework_version: str
    task: Task
    feeds: dict[str, np.ndarray]
    synthetic_rows: bool
    reference: dict[str, np.ndarray] | None
    reference_name: str
    reference_stats: ReferenceStats
    dataset_sha256: str | None
    source: str | None = None
    labels: list[str] | None = None
    label_output: str | None = None
    score_output: str | None = None
    tokenizer: TokenizerInfo | None = None
    texts: list[str] | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)
    magnitude_only: frozenset[str] = frozenset()


def export_sklearn(store: Store, model: object, *, name: str, version: str, sample: np.ndarray | Sample | None = None,
                   labels: list[str] | None = None, feature_names: list[str] | None = None,
                   options: PublishOptions = PublishOptions(), source: str | None = None) -> ModelMetadata:
    from exporters import sklearn as sk

    _check_target(store, name, version, options)
    role = sk.role_of(model)
    labels = sk.check_labels(model, labels)
    proto = sk.convert(model)
    sample = _as_sample(sample)
    width = sk.n_features(model)
    rows = None if sample.rows is None else np.asarray(sample.rows, dtype=np.float64).reshape(len(sample.rows), -1)
    if rows is not None and rows.shape[1] != width:
        raise ExportError(f"sample rows have {rows.shape[1]} features, {sk.describe(model)} expects {width}")
    synthetic = rows is None
    checked_rows = synthetic_rows((width,)) if synthetic else rows
    described = options.training_data if options.training_data is not None else rows
    if described is not None and np.asarray(described).reshape(len(described), -1).shape[1] != width:
        raise ExportError(f"reference rows have {np.asarray(described).reshape(len(described), -1).shape[1]} "
                          f"features, {sk.describe(model)} expects {width}")
    names = feature_names or sample.feature_names or options.training_feature_names or sk.feature_names(model)
    candidate = Candidate(
        model=proto, framework="scikit-learn", framework_version=sk.framework_version(), task=role.task,
        feeds={sk.INPUT_NAME: checked_rows.astype(np.float32)}, synthetic_rows=synthetic,
        reference=sk.reference_outputs(model, checked_rows, width := _width(proto, role.score_output)),
        magnitude_only=sk.magnitude_only(model, width),
        reference_name=f"scikit-learn {sk.framework_version()} {sk.describe(model)}",
        reference_stats=reference_stats(described, sk.INPUT_NAME, feature_names=names),
        dataset_sha256=dataset_sha256(described), source=source or sk.describe(model), labels=labels,
        label_output=role.label_output, score_output=role.score_output)
    return finish(store, candidate, name=name, version=version, options=options)


def export_torch(store: Store, module: object, *, name: str, version: str,
                 sample: np.ndarray | Sample | list[str] | None = None, labels: list[str] | None = None,
                 scores: str = "logits", tokenizer: FixedLengthTokenizer | str | Path | None = None,
                 max_length: int | None = None, task: Task | None = None, options: PublishOptions = PublishOptions(),
                 source: str | None = None) -> ModelMetadata:
    from exporters import torch as tx

    _check_target(store, name, version, options)
    module.eval()
    if isinstance(tokenizer, str | Path):
        tokenizer = load_tokenizer(tokenizer, max_length)
    sample = _as_sample(sample)
    names = tx.input_names(module, text=tokenizer is not None)
    if tokenizer is not None:
        feeds, synthetic, texts = _text_feeds(tokenizer, sample, names)
        stats = (token_count_stats(feeds[tx.ATTENTION_MASK] if tx.ATTENTION_MASK in feeds
                                   else feeds[tx.INPUT_IDS] != tokenizer.pad_id, tx.INPUT_IDS)
                 if not synthetic else reference_stats(None, tx.INPUT_IDS, synthetic=True))
        digest = dataset_sha256(options.training_data, texts) if options.training_data is not None or texts else None
    else:
        rows, synthetic = _tensor_rows(module, sample)
        feeds, texts = {tx.INPUT_NAME: rows}, None
        described = options.training_data if options.training_data is not None else (None if synthetic else rows)
        stats = reference_stats(described, tx.INPUT_NAME, feature_names=sample.feature_names or
                                options.training_feature_names, synthetic=synthetic and options.training_data is None)
        digest = dataset_sha256(described)
    classifier = labels is not None or task in ("classification", "text-classification")
    exported = tx.as_classifier(module, len(names), scores=scores) if classifier else module
    answers = tx.run_module(exported, feeds)
    output_names = tx.output_names_for(len(answers), classifier)
    if classifier and labels is not None and answers[1].shape[-1] != len(labels):
        raise ExportError(f"{len(labels)} labels given but the module returns {answers[1].shape[-1]} class scores")
    proto = tx.convert(exported, feeds, output_names, legacy=tx.is_torchscript(module))
    kind = "TorchScript" if tx.is_torchscript(module) else "torch"
    candidate = Candidate(
        model=proto, framework="pytorch", framework_version=tx.framework_version(),
        task=task or _torch_task(classifier, text=tokenizer is not None),
        feeds=feeds, synthetic_rows=synthetic, reference=dict(zip(output_names, answers, strict=True)),
        reference_name=f"{kind} {tx.framework_version()} {type(module).__name__}", reference_stats=stats,
        dataset_sha256=digest, source=source or type(module).__name__, labels=labels,
        label_output=tx.LABEL_OUTPUT if classifier else None,
        score_output=tx.SCORE_OUTPUT if classifier else output_names[0],
        tokenizer=tokenizer.info(tx.INPUT_IDS, tx.ATTENTION_MASK if len(names) > 1 else None) if tokenizer else None,
        texts=texts, extra_files={TOKENIZER_FILE: tokenizer.to_json_bytes()} if tokenizer else {})
    return finish(store, candidate, name=name, version=version, options=options)


def export_onnx_file(store: Store, onnx_file: OnnxFile | str | Path, *, name: str, version: str,
                     sample: np.ndarray | Sample | list[str] | None = None, labels: list[str] | None = None,
                     task: Task | None = None, tokenizer: FixedLengthTokenizer | str | Path | None = None,
                     max_length: int | None = None, options: PublishOptions = PublishOptions()) -> ModelMetadata:
    """Import an existing ONNX model unchanged. There is no source model to compare with: parity records that
    onnxruntime loads it and answers the rows with finite values."""
    _check_target(store, name, version, options)
    if not isinstance(onnx_file, OnnxFile):
        onnx_file = read_onnx_file(onnx_file)
    if isinstance(tokenizer, str | Path):
        tokenizer = load_tokenizer(tokenizer, max_length)
    inputs, outputs = signature(onnx_file.model)
    sample = _as_sample(sample)
    texts = None
    if tokenizer is not None:
        input_names = [spec.name for spec in inputs]
        feeds, synthetic, texts = _text_feeds(tokenizer, sample, input_names)
        stats = reference_stats(None, input_names[0], synthetic=True) if synthetic else token_count_stats(
            feeds.get(input_names[-1]), input_names[0])
    else:
        feeds, synthetic = _feeds_from_signature(inputs, sample)
        first = next(iter(feeds))
        given = options.training_data is not None
        stats = reference_stats(options.training_data if given else (None if synthetic else feeds[first]), first,
                                feature_names=sample.feature_names or options.training_feature_names,
                                synthetic=synthetic and not given)
    label_output, score_output = guess_outputs(outputs)
    described = options.training_data if options.training_data is not None else (None if synthetic else
                                                                                  next(iter(feeds.values())))
    candidate = Candidate(
        model=onnx_file.model, framework=onnx_file.producer, framework_version=onnx_file.producer_version,
        task=task or ("classification" if labels else "other"), feeds=feeds, synthetic_rows=synthetic,
        reference=None, reference_name="nothing: imported as is, no source model",
        reference_stats=stats, dataset_sha256=dataset_sha256(described, None if described is not None else texts),
        source=onnx_file.path.name, labels=labels, label_output=label_output if labels else None,
        score_output=score_output, texts=texts,
        tokenizer=tokenizer.info(inputs[0].name, inputs[1].name if len(inputs) > 1 else None) if tokenizer else None,
        extra_files={TOKENIZER_FILE: tokenizer.to_json_bytes()} if tokenizer else {})
    return finish(store, candidate, name=name, version=version, options=options, model_bytes=onnx_file.data)


def export_source(store: Store, source: Source, **kwargs) -> ModelMetadata:
    """Dispatch a loaded source (see load_source) to its exporter."""
    if source.kind == "onnx":
        kwargs.pop("scores", None)
        return export_onnx_file(store, source.model, **kwargs)
    if source.kind == "torch":
        return export_torch(store, source.model, source=source.description, **kwargs)
    kwargs = {key: value for key, value in kwargs.items() if key not in ("tokenizer", "max_length", "task", "scores")}
    return export_sklearn(store, source.model, source=source.description, **kwargs)


def finish(store: Store, candidate: Candidate, *, name: str, version: str, options: PublishOptions,
           model_bytes: bytes | None = None) -> ModelMetadata:
    model_bytes = model_bytes if model_bytes is not None else candidate.model.SerializeToString()
    compat = check_compatibility(candidate.model)
    if not options.allow_incompatible:
        require_compatible(compat)
    actual = run_model(model_bytes, candidate.feeds)
    parity = _parity(candidate, actual, options.tolerance)
    require_parity(parity)
    inputs, outputs = signature(candidate.model)
    stats = _with_prediction_reference(candidate, options, model_bytes, actual, inputs)
    metadata = ModelMetadata(
        name=name, version=version, framework=candidate.framework, framework_version=candidate.framework_version,
        task=candidate.task, opset=compat.opset, inputs=inputs, outputs=outputs, model_sha256="", model_size=0,
        labels=candidate.labels, label_output=candidate.label_output, score_output=candidate.score_output,
        metrics=dict(options.metrics), training_samples=options.training_samples,
        dataset_sha256=candidate.dataset_sha256, parity=parity, node_compatibility=compat,
        reference_stats=stats, tokenizer=candidate.tokenizer, source=candidate.source)
    node = _node_parity(metadata, model_bytes, candidate, options, compatible=compat.compatible)
    if node.checked and not node.passed:
        raise NodeParityError(f"onnxruntime-node disagrees with onnxruntime on {name} {version}: {node.detail}; "
                              f"nothing was published")
    metadata = metadata.model_copy(update={"node_compatibility": compat.model_copy(update={"node_parity": node})})
    return publish(store, metadata, model_bytes, candidate.extra_files, options.change, force=options.force)


def _with_prediction_reference(candidate: Candidate, options: PublishOptions, model_bytes: bytes,
                               checked: dict[str, np.ndarray], inputs: list[TensorSpec]) -> ReferenceStats:
    """The reference statistics with what the ONNX model answers on the reference rows: the training rows when given
    (run here), else the sample rows parity already ran."""
    stats = candidate.reference_stats
    if not stats.available:
        return stats
    answers = checked
    if options.training_data is not None and candidate.tokenizer is None:
        if len(inputs) != 1:
            return stats.model_copy(update={"prediction_reason": "the model takes several inputs; reference rows "
                                                                 "feed only the first"})
        answers = _run_reference_rows(model_bytes, inputs[0], options.training_data)
    prediction, reason = prediction_stats(answers, label_output=candidate.label_output,
                                          score_output=candidate.score_output)
    return stats.model_copy(update={"prediction": prediction, "prediction_reason": reason})


def _run_reference_rows(model_bytes: bytes, spec: TensorSpec, rows: np.ndarray) -> dict[str, np.ndarray]:
    row_shape = tuple(d if isinstance(d, int) else -1 for d in spec.shape[1:])
    try:
        feed = np.asarray(rows).reshape(len(rows), *row_shape).astype(spec.dtype)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"reference rows of shape {np.shape(rows)} do not fit input {spec.describe()}: "
                          f"{exc}") from None
    chunks = [run_model(model_bytes, {spec.name: feed[start:start + REFERENCE_CHUNK_ROWS]})
              for start in range(0, len(feed), REFERENCE_CHUNK_ROWS)]
    return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _parity(candidate: Candidate, actual: dict[str, np.ndarray], tolerance: float) -> ParityResult:
    rows = len(next(iter(candidate.feeds.values())))
    if candidate.reference is None:
        bad = [name for name, value in actual.items() if value.dtype.kind == "f" and not np.all(np.isfinite(value))]
        return ParityResult(passed=not bad, rows=rows, synthetic_rows=candidate.synthetic_rows, tolerance=0.0,
                            reference=candidate.reference_name,
                            detail=f"non-finite values in {', '.join(bad)}" if bad else
                            "onnxruntime loads the model and answers every row with finite values")
    return compare_outputs(candidate.reference, actual, reference_name=candidate.reference_name,
                           label_output=candidate.label_output, tolerance=tolerance,
                           synthetic_rows=candidate.synthetic_rows, magnitude_only=candidate.magnitude_only)


def _node_parity(metadata: ModelMetadata, model_bytes: bytes, candidate: Candidate, options: PublishOptions, *,
                 compatible: bool) -> NodeParityResult:
    """Run the Node check against a throwaway store first, so a disagreement leaves the real store untouched."""
    if not options.check_node:
        return NodeParityResult(checked=False, detail="skipped (--no-check-node)")
    if not compatible:
        return NodeParityResult(checked=False, detail="skipped: the model is not Node-compatible")
    if candidate.texts:
        rows: dict = {"text": candidate.texts[:NODE_CHECK_ROWS]}
    else:
        rows = {"inputs": {key: value[:NODE_CHECK_ROWS].tolist() for key, value in candidate.feeds.items()}}
    with tempfile.TemporaryDirectory(prefix="onnxgate-export-") as tmp:
        scratch = Store(Path(tmp))
        written = write_version(scratch, metadata, model_bytes, candidate.extra_files)
        return check_node(scratch, written, rows)


def _width(model: onnx.ModelProto, output: str | None) -> int | None:
    spec = next((s for s in signature(model)[1] if s.name == output), None)
    return spec.shape[1] if spec is not None and len(spec.shape) > 1 and isinstance(spec.shape[1], int) else None


def _torch_task(classifier: bool, *, text: bool) -> Task:
    if not classifier:
        return "other"
    return "text-classification" if text else "classification"


def _check_target(store: Store, name: str, version: str, options: PublishOptions) -> None:
    """Fail before the slow work: a bad name, a non-finite metric or an existing version."""
    check_name(name)
    check_version(version)
    check_metrics(options.metrics, f"{name} {version}")
    if not options.force and store.has_version(name, version):
        raise DuplicateVersion(f"{name} {version} already exists in {store.root} (use --force to replace it)")


def _as_sample(sample: np.ndarray | Sample | list[str] | None) -> Sample:
    if sample is None or isinstance(sample, Sample):
        return sample or Sample()
    if isinstance(sample, list) and all(isinstance(item, str) for item in sample):
        return Sample(texts=list(sample))
    return Sample(rows=np.asarray(sample))


def _tensor_rows(module: object, sample: Sample) -> tuple[np.ndarray, bool]:
    if sample.rows is not None:
        return np.asarray(sample.rows, dtype=np.float32), False
    shape = getattr(module, "input_shape", None)
    if shape is None:
        raise ExportError(f"pass sample rows (--sample) so the input shape of {type(module).__name__} is known, or "
                          f"give the module an input_shape attribute (shape of one row)")
    return synthetic_rows(tuple(int(d) for d in shape)), True


def _text_feeds(tokenizer: FixedLengthTokenizer, sample: Sample,
                names: list[str]) -> tuple[dict[str, np.ndarray], bool, list[str] | None]:
    """Feeds for a text model: the sample texts tokenized, given token ids, or random ids of random lengths."""
    if sample.texts:
        ids, mask = tokenizer.encode(sample.texts)
        synthetic, texts = False, sample.texts
    elif sample.rows is not None:
        ids = np.asarray(sample.rows, dtype=np.int64).reshape(len(sample.rows), -1)
        mask = (ids != tokenizer.pad_id).astype(np.int64)
        synthetic, texts = False, None
    else:
        rng = np.random.default_rng(0)
        lengths = rng.integers(1, tokenizer.max_length + 1, size=64)
        mask = (np.arange(tokenizer.max_length)[None, :] < lengths[:, None]).astype(np.int64)
        ids = np.where(mask == 1, rng.integers(1, max(tokenizer.vocab_size, 2), size=mask.shape), tokenizer.pad_id)
        synthetic, texts = True, None
    feeds = {names[0]: ids.astype(np.int64)}
    if len(names) > 1:
        feeds[names[1]] = mask
    return feeds, synthetic, texts


def _feeds_from_signature(inputs: list, sample: Sample) -> tuple[dict[str, np.ndarray], bool]:
    if sample.rows is not None:
        if len(inputs) != 1:
            raise ExportError("sample rows can feed a model with one input only; this model takes "
                              + ", ".join(spec.name for spec in inputs))
        return {inputs[0].name: np.asarray(sample.rows, dtype=inputs[0].dtype)}, False
    feeds = {}
    for spec in inputs:
        row_shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape[1:])
        if spec.dtype.startswith("float"):
            feeds[spec.name] = synthetic_rows(row_shape).astype(spec.dtype)
        elif spec.dtype in ("string",):
            raise ExportError(f"input {spec.name!r} takes strings: pass sample rows (--sample)")
        else:
            feeds[spec.name] = np.zeros((64, *row_shape), dtype=spec.dtype)
    return feeds, True
