"""`onnxgate quality NAME --env ENV [--since 7d] [--json]`: live accuracy (or RMSE and MAE) per version and arm, from
captured requests and the labels sent back for them; the same function as the gateway's `GET /quality/{model}`."""
from __future__ import annotations

import argparse

from modelstore.errors import ModelNotFound
from monitoring.quality import InvalidDuration, live_quality, parse_duration
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json, print_table


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("quality", help="live quality from captured requests and labelled feedback",
                            description="Join the requests captured for NAME in ENV with the labels sent to "
                            "POST /feedback/NAME and report accuracy (labels) or RMSE and MAE (values) per version "
                            "and arm, with the labelled rows and the labels of unknown ids.")
    parser.add_argument("name", help="model name")
    parser.add_argument("--env", required=True, help="environment, e.g. production")
    parser.add_argument("--since", type=duration, default=parse_duration("7d"), metavar="DURATION",
                        help="window: requests captured and labels received in the last 7d (default), 24h, 30m...")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    store = store_from(args)
    if args.name not in store.registry.read().state.models:
        raise ModelNotFound(f"model {args.name!r} is not registered")
    report = live_quality(store.root, args.name, args.env, args.since)
    if args.json:
        print_json(report.as_json())
        return 0
    print(f"{args.name} in {args.env}, last {args.since:g} s: {report.labels} labels, {report.matched} matched, "
          f"{report.unknown_ids} unknown ids, {report.unusable} unusable")
    rows = [(arm.version, arm.arm, arm.labelled_rows, _shown(arm.accuracy), _shown(arm.rmse), _shown(arm.mae))
            for arm in report.arms]
    print_table(("version", "arm", "labelled rows", "accuracy", "rmse", "mae"), rows)
    return 0


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
