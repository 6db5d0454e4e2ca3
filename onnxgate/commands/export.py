"""`onnxgate export SOURCE`: turn a trained model into a checked store version (a thin shell over exporters.publish)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.errors import ExportError, SourceLoadError
from modelstore.errors import InvalidMetadata
from modelstore.metadata import check_metrics
from onnxgate.commands.common import (
    add_change_arguments,
    add_json_argument,
    add_store_argument,
    change_from,
    store_from,
)
from onnxgate.errors import UsageError
from onnxgate.output import print_json, print_table

if TYPE_CHECKING:
    from exporters.sample import Sample


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export", help="export a trained model to ONNX, check it, and publish it to the store",
        description="Export SOURCE to ONNX, check Node compatibility and parity with the source model, record "
                    "reference statistics, and publish it as a new store version. SOURCE is a joblib/pickle file "
                    "(scikit-learn, or a pickled torch module), a TorchScript or torch.save file (.pt), "
                    "a module:attr spec (an nn.Module or estimator, or a zero-argument factory), or a .onnx file. "
                    "WARNING: loading a pickle or joblib file (and torch.save files) executes code from it; export "
                    "only files you trust.")
    parser.add_argument("source", metavar="SOURCE", help=".joblib/.pkl, .pt, module:attr or .onnx (pickles run code)")
    parser.add_argument("--name", required=True, help="model name in the store")
    parser.add_argument("--version", required=True, help="semantic version, e.g. v1.0.0")
    parser.add_argument("--metrics", metavar="FILE", help="JSON object of metric name -> number")
    parser.add_argument("--training-samples", type=int, metavar="N", help="number of training rows")
    parser.add_argument("--sample", metavar="FILE",
                        help="held-out rows for parity and statistics: .npy or .csv rows, .json rows or list of "
                             "texts, .txt one text a line (required for torch modules without input_shape)")
    parser.add_argument("--reference-data", metavar="FILE",
                        help="training rows the reference statistics (drift) describe: .csv with a header or .npy "
                             "(default: the --sample rows); tabular models only")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="class names by class id, comma-separated")
    labels.add_argument("--labels-file", metavar="FILE", help="class names, one a line")
    parser.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json (Hugging Face tokenizers) of a text model")
    parser.add_argument("--max-length", type=int, metavar="N", help="token sequence length (default: the tokenizer's)")
    parser.add_argument("--scores", choices=("logits", "probabilities"), default="logits",
                        help="what a torch classifier returns (default: logits, softmax is added)")
    parser.add_argument("--tolerance", type=float, help="parity tolerance (default 1e-4, scaled by max |output|)")
    parser.add_argument("--allow-incompatible", action="store_true",
                        help="publish even if onnxruntime-node could not load the model")
    parser.add_argument("--check-node", dest="check_node", action="store_true", default=True,
                        help="run the parity rows through the Node loader when available (default)")
    parser.add_argument("--no-check-node", dest="check_node", action="store_false", help="skip the Node check")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    add_store_argument(parser)
    add_change_arguments(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from exporters.parity import DEFAULT_TOLERANCE
    from exporters.publish import PublishOptions, export_source, load_source
    from exporters.sample import load_sample

    reference = read_reference_data(args)
    options = PublishOptions(
        metrics=read_metrics(args.metrics) if args.metrics else {}, training_samples=args.training_samples,
        training_data=reference.rows if reference else None,
        training_feature_names=reference.feature_names if reference else None,
        tolerance=args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE,
        allow_incompatible=args.allow_incompatible, check_node=args.check_node, change=change_from(args),
        force=args.force)
    sample = None
    if args.sample:
        _require_file(args.sample, "--sample")
        try:
            sample = load_sample(args.sample)
        except ExportError as error:
            raise UsageError(str(error)) from None
    if args.tokenizer:
        _require_file(args.tokenizer, "--tokenizer")
    try:
        source = load_source(args.source)
    except SourceLoadError as error:
        raise UsageError(str(error)) from None
    extra = {"tokenizer": args.tokenizer, "max_length": args.max_length} if args.tokenizer else {}
    if source.kind == "torch":
        extra["scores"] = args.scores
    metadata = export_source(store_from(args), source, name=args.name, version=args.version, sample=sample,
                             labels=read_labels(args), options=options, **extra)
    summary = {
        "name": metadata.name, "version": metadata.version, "framework": metadata.framework,
        "opset": metadata.opset, "signature": metadata.signature_text(), "sha256": metadata.model_sha256,
        "parity": metadata.parity.model_dump(mode="json"),
        "node_compatibility": metadata.node_compatibility.model_dump(mode="json"),
        "reference_stats": metadata.reference_stats.available,
    }
    if args.json:
        print_json(summary)
    else:
        node = metadata.node_compatibility.node_parity
        print_table(("field", "value"), [
            ("model", f"{metadata.name} {metadata.version}"),
            ("framework", f"{metadata.framework} {metadata.framework_version}"),
            ("opset", metadata.opset),
            ("signature", metadata.signature_text()),
            ("parity", _parity_text(metadata.parity)),
            ("node", "not checked: " + (node.detail or "") if node is None or not node.checked
             else f"passed={node.passed} onnxruntime-node {node.onnxruntime_node} max diff {node.max_abs_diff:.3g}"),
            ("reference stats", _reference_text(metadata.reference_stats)),
            ("sha256", metadata.model_sha256),
        ])
    return 0


def read_metrics(path: str) -> dict[str, float]:
    _require_file(path, "--metrics")
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"--metrics {path}: not valid JSON ({error})") from None
    if not isinstance(payload, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in payload.values()):
        raise UsageError(f"--metrics {path}: expected a JSON object of metric name -> number")
    try:
        return check_metrics(payload, f"--metrics {path}")
    except InvalidMetadata as error:  # Python's json reads NaN and Infinity; metadata.json cannot hold them
        raise UsageError(str(error)) from None


def read_reference_data(args: argparse.Namespace) -> Sample | None:
    """--reference-data as a Sample (rows, and the CSV header's names), or None."""
    from exporters.sample import load_sample

    if not args.reference_data:
        return None
    path = args.reference_data
    _require_file(path, "--reference-data")
    if args.tokenizer:
        raise UsageError("--reference-data: text models are described by their --sample texts (token counts)")
    if Path(path).suffix.lower() not in (".csv", ".npy"):
        raise UsageError(f"--reference-data {path}: expected a .csv (with a header) or .npy file")
    try:
        reference = load_sample(path)
    except ExportError as error:
        raise UsageError(f"--reference-data: {error}") from None
    if reference.rows is None or reference.rows.ndim == 0 or len(reference.rows) == 0:
        raise UsageError(f"--reference-data {path}: no rows")
    if reference.rows.dtype.kind not in "biuf":
        raise UsageError(f"--reference-data {path}: rows must be numbers, not {reference.rows.dtype}")
    return reference


def read_labels(args: argparse.Namespace) -> list[str] | None:
    if args.labels:
        return [label.strip() for label in args.labels.split(",")]
    if args.labels_file:
        _require_file(args.labels_file, "--labels-file")
        lines = Path(args.labels_file).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return None


def _require_file(path: str, option: str) -> None:
    if not Path(path).is_file():
        raise UsageError(f"{option} {path}: no such file")


def _reference_text(stats) -> str:
    if not stats.available:
        return stats.reason or "none"
    prediction = (f"{stats.prediction.kind} of {stats.prediction.output}" if stats.prediction is not None
                  else f"none ({stats.prediction_reason})")
    return f"{len(stats.features)} features over {stats.rows} rows; outputs: {prediction}"


def _parity_text(parity) -> str:
    agreement = "" if parity.label_agreement is None else f", labels agree {parity.label_agreement:.1%}"
    diff = "" if parity.max_abs_diff is None else f", max diff {parity.max_abs_diff:.3g}"
    return f"passed on {parity.rows} {'synthetic ' if parity.synthetic_rows else ''}rows{diff}{agreement}"
