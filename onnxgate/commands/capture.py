"""`onnxgate capture NAME --env ENV --rate R` (or `--default`): the share of a deployment's answered requests the
gateway captures to the store, recorded through the transition API (audited; kept across redeploys)."""
from __future__ import annotations

import argparse

from modelstore.capture_rate import set_capture_rate
from onnxgate.commands.canary import print_outcome
from onnxgate.commands.common import add_change_arguments, add_json_argument, add_store_argument, change_from, store_from
from onnxgate.errors import UsageError


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share between 0 and 1, not {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("capture", help="set the share of a deployment's requests captured for monitoring",
                            description="Capture a share of ENV's answered requests of NAME (inputs, outputs, version, "
                            "arm, request id) to the store, for feedback and live quality. 0 turns capture off for "
                            "the deployment; --default returns it to the gateway's ONNXGATE_CAPTURE_RATE.")
    parser.add_argument("name", help="model name")
    parser.add_argument("--env", required=True, help="environment, e.g. production")
    parser.add_argument("--rate", type=share, help="share of requests captured, 0 to 1 (e.g. 0.05)")
    parser.add_argument("--default", action="store_true", help="use the gateway's capture_rate setting")
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.rate is None) == (not args.default):
        raise UsageError("give --rate R or --default, not both")
    outcome = set_capture_rate(store_from(args), args.name, args.env, args.rate, change_from(args))
    shown = "the gateway's default" if args.rate is None else f"{args.rate:g}"
    text = (f"capture rate of {args.name} in {args.env}: {shown}" if outcome.changed
            else f"capture rate of {args.name} in {args.env} already {shown}; nothing changed")
    print_outcome(outcome, args.json, text)
    return 0
