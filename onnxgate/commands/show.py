"""`onnxgate show NAME [VERSION]`: one version's metadata: signature, checks, metrics."""
from __future__ import annotations

import argparse

from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("show", help="show a version's metadata (default: latest)")
    parser.add_argument("name")
    parser.add_argument("version", nargs="?", default="latest")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    metadata = store_from(args).read_metadata(args.name, args.version)
    if args.json:
        print_json(metadata.model_dump(mode="json"))
        return 0
    compat = metadata.node_compatibility
    node_parity = compat.node_parity
    lines = [
        f"{metadata.name} {metadata.version}  ({metadata.framework} {metadata.framework_version}, {metadata.task}, "
        f"opset {metadata.opset})",
        f"created     {metadata.created_at}",
        f"sha256      {metadata.model_sha256}  ({metadata.model_size} bytes)",
        "inputs      " + "; ".join(s.describe() for s in metadata.inputs),
        "outputs     " + "; ".join(s.describe() for s in metadata.outputs),
        f"labels      {', '.join(metadata.labels) if metadata.labels else '-'}",
        "metrics     " + (" ".join(f"{k}={v:.4f}" for k, v in sorted(metadata.metrics.items())) or "-"),
        f"samples     {metadata.training_samples if metadata.training_samples is not None else '-'}",
        f"parity      {'passed' if metadata.parity.passed else 'FAILED'} on {metadata.parity.rows} "
        f"{'synthetic ' if metadata.parity.synthetic_rows else ''}rows, max |diff| {metadata.parity.max_abs_diff}, "
        f"label agreement {metadata.parity.label_agreement}",
        f"node        {'compatible' if compat.compatible else 'INCOMPATIBLE: ' + '; '.join(compat.problems)}"
        + (f", node parity {'passed' if node_parity.passed else 'not checked' if not node_parity.checked else 'FAILED'}"
           if node_parity else ""),
        f"reference   {_reference_text(metadata)}",
    ]
    if metadata.tokenizer:
        lines.append(f"tokenizer   {metadata.tokenizer.file}, max_length {metadata.tokenizer.max_length}")
    print("\n".join(lines))
    return 0


def _reference_text(metadata) -> str:
    stats = metadata.reference_stats
    if not stats.available:
        return f"missing: {stats.reason}"
    return f"{stats.rows} rows, {len(stats.features)} features"
