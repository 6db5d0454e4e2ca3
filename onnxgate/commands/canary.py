"""`onnxgate canary NAME VERSION --env ENV --weight 10 [--steps 25,50,100 --interval 10m]`: start (or re-weight) a canary.

Also home to the argument types and the outcome printer the other rollout commands (promote, rollback, shadow) share.
"""
from __future__ import annotations

import argparse
import dataclasses
import re

from modelstore.rollout import start_canary
from modelstore.slo import SloPolicy
from modelstore.transitions import Outcome
from onnxgate.commands.common import (
    add_change_arguments,
    add_dry_run_argument,
    add_json_argument,
    add_store_argument,
    change_from,
    store_from,
)
from onnxgate.commands.verdicts import with_verdict
from onnxgate.errors import UsageError
from onnxgate.output import print_json

DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(text: str) -> float:
    """'30s', '10m', '1h', '1.5h', '500ms', or plain seconds -> seconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30s, 10m, 1h")
    return float(match.group(1)) * UNIT_SECONDS[match.group(2)]


def percentage(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: use a number such as 10") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}: it must be above 0 and at most 100")
    return value


def percentages(text: str) -> list[float]:
    return [percentage(part) for part in text.split(",") if part.strip()]


def print_outcome(outcome: Outcome, as_json: bool, text: str, dry_run: bool = False) -> None:
    """`text` says what changed; the gates' verdicts follow it (modelstore.gates)."""
    if as_json:
        print_json({**dataclasses.asdict(outcome), "dry_run": dry_run})
    else:
        print(with_verdict(outcome, text, dry_run))


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("canary", help="send a share of an environment's traffic to a new version",
                            description="Send a share of ENV's traffic to VERSION. The gateway rolls the canary back by "
                            "itself when it breaches the SLO, and with --steps climbs to the next step after each "
                            "healthy --interval (the step to 100 promotes). Run again for the same version to re-weight.")
    parser.add_argument("name", help="model name")
    parser.add_argument("version", help="version to canary (or 'latest')")
    parser.add_argument("--env", required=True, help="environment, e.g. prod")
    parser.add_argument("--weight", type=percentage, help="percent of traffic to start with (default: the first step)")
    parser.add_argument("--steps", type=percentages, default=[], metavar="W1,W2,...",
                        help="weights to climb to, e.g. 5,25,50,100 (steps at or below --weight are skipped)")
    parser.add_argument("--interval", type=duration, metavar="DURATION", help="healthy time per step, e.g. 10m")
    slo = parser.add_argument_group("SLO overrides for this deployment (default: the gateway's settings)")
    slo.add_argument("--max-error-rate", type=float, metavar="RATE", help="e.g. 0.01 for 1%%")
    slo.add_argument("--max-latency-ms", type=float, metavar="MS", help="absolute limit on the latency quantile")
    slo.add_argument("--max-latency-ratio", type=float, metavar="X", help="limit relative to stable, e.g. 1.5")
    slo.add_argument("--window", type=duration, metavar="DURATION", help="judging window, e.g. 10s")
    slo.add_argument("--min-requests", type=int, metavar="N", help="fewer requests per window are inconclusive")
    slo.add_argument("--breaches", type=int, metavar="N", help="breached windows in a row that roll back")
    slo.add_argument("--bake", type=duration, metavar="DURATION", help="watch the version this long after promotion")
    slo.add_argument("--max-prediction-distance", type=float, metavar="TVD",
                     help="roll back when the canary's predicted-class shares differ from stable's by more than this "
                     "total variation distance, e.g. 0.1 (classifiers; off unless set)")
    slo.add_argument("--min-prediction-rows", type=int, metavar="N",
                     help="predicted rows each arm needs in a window before prediction drift is compared")
    slo.add_argument("--max-quality-drop", type=float, metavar="DROP",
                     help="roll back when the canary's live accuracy is below stable's by more than this, e.g. 0.05 "
                     "(off unless set)")
    slo.add_argument("--min-labels", type=int, metavar="N",
                     help="labelled rows each arm needs before quality is compared")
    add_dry_run_argument(parser)
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def slo_from(args: argparse.Namespace) -> SloPolicy | None:
    fields = {"max_error_rate": args.max_error_rate, "max_latency_ms": args.max_latency_ms,
              "max_latency_ratio": args.max_latency_ratio, "window_s": args.window, "min_requests": args.min_requests,
              "breaches_to_rollback": args.breaches, "bake_s": args.bake,
              "max_prediction_distance": args.max_prediction_distance, "min_prediction_rows": args.min_prediction_rows,
              "max_quality_drop": args.max_quality_drop, "min_labels": args.min_labels}
    given = {key: value for key, value in fields.items() if value is not None}
    return SloPolicy(**given) if given else None


def run(args: argparse.Namespace) -> int:
    weight = args.weight
    if weight is None:
        if not args.steps:
            raise UsageError("give --weight, or --steps to start at the first step")
        weight = args.steps[0]
    outcome = start_canary(store_from(args), args.name, args.version, args.env, weight, args.steps, args.interval,
                           change_from(args), slo=slo_from(args), dry_run=args.dry_run)
    steps = outcome.details["steps"]
    plan = f"; then {', '.join(f'{s:g}%' for s in steps)} every {args.interval:g}s while healthy" if steps else ""
    print_outcome(outcome, args.json, f"canary {args.name} {outcome.after} in {args.env}: {weight:g}% of traffic "
                                      f"(stable {outcome.before}){plan}", args.dry_run)
    return 0
