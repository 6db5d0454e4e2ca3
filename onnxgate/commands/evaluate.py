"""`onnxgate evaluate NAME VERSION --data FILE --label COLUMN`: measure the version's ONNX model on a holdout file and
record the figures with the version. governance (scikit-learn) is imported when the command runs, so the rest of the
CLI works without the `govern` extra."""
from __future__ import annotations

import argparse
from pathlib import Path

from onnxgate.commands.common import (
    add_change_arguments,
    add_json_argument,
    add_store_argument,
    change_from,
    missing_govern_extra,
    non_negative_number,
    store_from,
)
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="measure a version on a holdout file (CSV) and record the metrics")
    parser.add_argument("name")
    parser.add_argument("version", help="a version, or latest")
    parser.add_argument("--data", required=True, metavar="FILE", help="holdout CSV with a header row")
    parser.add_argument("--label", required=True, metavar="COLUMN", help="the column holding the true label or value")
    parser.add_argument("--group", metavar="COLUMN", help="also measure per value of this column, and the gaps")
    parser.add_argument("--noise-scale", type=non_negative_number, default=0.05, metavar="S",
                        help="noise_sensitivity's Gaussian noise, in standard deviations of each feature (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="the noise's random seed (default 0)")
    add_store_argument(parser)
    add_change_arguments(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from governance.evaluate import evaluate
    except ImportError as exc:
        raise missing_govern_extra("evaluate", exc) from None
    store = store_from(args)
    version = store.read_metadata(args.name, args.version).version  # 'latest' resolved once, named in the output
    record = evaluate(store, args.name, version, Path(args.data), args.label, args.group,
                      noise_scale=args.noise_scale, seed=args.seed, change=change_from(args))
    payload = record.model_dump(mode="json")
    if args.json:
        print_json(payload)
        return 0
    print(f"{args.name} {version} on {record.dataset} ({record.rows} rows, sha256 {record.dataset_sha256[:12]}), "
          f"{record.task}, measured {record.measured_at} by {record.actor}")
    print_table(["metric", "value"], [(name, f"{value:.4f}") for name, value in sorted(record.metrics.items())])
    if record.groups:
        names = sorted({name for metrics in record.groups.values() for name in metrics})
        print()
        print_table([record.group or "group", *names],
                    [(group, *(_cell(metrics.get(name)) for name in names)) for group, metrics in sorted(record.groups.items())]
                    + [("largest gap", *(_cell(record.fairness_gaps.get(name)) for name in names))])
    for what, why in sorted(record.parameters.get("omitted", {}).items()):
        print(f"left out: {what}: {why}")
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
