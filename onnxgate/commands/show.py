"""`onnxgate show NAME [VERSION]`: one version's metadata: signature, checks, metrics."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from modelstore.approvals import tally
from modelstore.errors import StoreError
from modelstore.overview import required_approvals
from modelstore.registry import VersionRecord
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
    store = store_from(args)
    metadata = store.read_metadata(args.name, args.version)
    try:
        record: VersionRecord | None | str = store.registry.read().state.models.get(metadata.name, {}).get(
            metadata.version)
    except StoreError as exc:  # the version's own files are still worth showing
        record = f"unreadable: {exc}"
    if args.json:
        print_json({**metadata.model_dump(mode="json"),
                    "registry": record.model_dump(mode="json") if isinstance(record, VersionRecord) else record})
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
    lines += registry_lines(record, required_approvals(store))
    print("\n".join(lines))
    return 0


def _reference_text(metadata) -> str:
    stats = metadata.reference_stats
    if not stats.available:
        return f"missing: {stats.reason}"
    kept = "quantiles and 10 bins" if all(f.quantiles for f in stats.features) else "10 bins"
    outputs = (f"outputs: {stats.prediction.kind} of {stats.prediction.output}" if stats.prediction is not None
               else "outputs: none")
    return f"{stats.rows} rows, {len(stats.features)} features ({kept}), {outputs}"


def registry_lines(record: VersionRecord | str | None, required: Callable[[str], int | None]) -> list[str]:
    """What the registry knows of the version: status, where it was deployed, what was measured, who approved
    (`record`: a string saying why the registry could not be read)."""
    if record is None:
        return ["registry    not registered"]
    if isinstance(record, str):
        return [f"registry    {record}"]
    lines = [f"status      {record.status}" + (f", deployed to {', '.join(record.deployed_to)}"
                                              if record.deployed_to else "")]
    evaluation = record.evaluation
    if evaluation is None:
        lines.append("measured    - (onnxgate evaluate)")
    else:
        figures = " ".join(f"{k}={v:.4f}" for k, v in sorted(evaluation.metrics.items()))
        lines.append(f"measured    {figures} on {evaluation.rows} rows of {evaluation.dataset} "
                     f"(sha256 {evaluation.dataset_sha256[:12]}…, {evaluation.measured_at}, by {evaluation.actor})")
    for environment in sorted(record.approvals):
        for kind in ("deploy", "rollback"):
            latest = record.approvals_for(environment, kind)
            if latest:
                decisions = ", ".join(f"{actor} {decision.status}" for actor, decision in sorted(latest.items()))
                label = "approvals" if kind == "deploy" else "rollback approvals"
                needed = required(environment)
                status = "policy unreadable" if needed is None else tally(record, environment, needed, kind=kind).status
                lines.append(f"{label:<11} {environment} ({status}): {decisions}")
    return lines
