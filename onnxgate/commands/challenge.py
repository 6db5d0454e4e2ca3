"""`onnxgate challenge NAME VERSION --env ENV --data FILE --label COLUMN [--metric f1] [--min-improvement 0.05]`:
measure VERSION and the environment's champion on the same holdout; a winner starts a canary (through the gates), a
loser is recorded as rejected (exit 9)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from modelstore.transitions import Outcome
from onnxgate.commands.canary import duration, percentage, percentages, print_outcome
from onnxgate.commands.common import (
    add_change_arguments,
    add_dry_run_argument,
    add_json_argument,
    add_store_argument,
    change_from,
    missing_govern_extra,
    non_negative_number,
    store_from,
)
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "challenge", help="measure a version against the environment's champion; a winner starts a canary",
        description="Measure VERSION (the challenger) and ENV's stable version (the champion) on the same holdout. "
        "The challenger wins when its metric beats the champion's by at least --min-improvement (relative) and the "
        "lead is significant on the holdout (McNemar's test for accuracy, else a paired bootstrap interval above "
        "zero). A winner starts a canary, which the environment's gates judge; a loser is recorded as rejected and "
        "the command exits 9. With no champion in ENV the challenger is deployed if it clears the gates.")
    parser.add_argument("name")
    parser.add_argument("version", help="the challenger, or latest")
    parser.add_argument("--env", required=True, help="the environment whose stable version is the champion")
    parser.add_argument("--data", required=True, metavar="FILE", help="holdout CSV with a header row")
    parser.add_argument("--label", required=True, metavar="COLUMN", help="the column holding the true label or value")
    parser.add_argument("--metric", help="the deciding metric (default: f1 for a classifier, rmse for a regressor)")
    parser.add_argument("--min-improvement", type=non_negative_number, default=0.05, metavar="R",
                        help="relative gain needed, e.g. 0.05 for 5%% (default)")
    parser.add_argument("--resamples", type=_resamples, metavar="N",
                        help="paired bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed (default 0)")
    plan = parser.add_argument_group("the winner's canary (default: the policy's [environments.ENV.canary], else 10%)")
    plan.add_argument("--weight", type=percentage, help="percent of traffic to start with")
    plan.add_argument("--steps", type=percentages, metavar="W1,W2,...", help="weights to climb to, e.g. 25,50,100")
    plan.add_argument("--interval", type=duration, metavar="DURATION", help="healthy time per step, e.g. 10m")
    add_dry_run_argument(parser)
    add_change_arguments(parser)
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def _resamples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 100 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be between 100 and 100000, not {text}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        from governance.challenge import CanaryOverrides, ChallengeRules, challenge
        from governance.errors import ChallengerLost
    except ImportError as exc:
        raise missing_govern_extra("challenge", exc) from None
    given = {"resamples": args.resamples} if args.resamples is not None else {}
    rules = ChallengeRules(metric=args.metric, min_improvement=args.min_improvement, seed=args.seed, **given)
    overrides = CanaryOverrides(args.weight, tuple(args.steps) if args.steps else None, args.interval)
    result = challenge(store_from(args), args.name, args.version, args.env, Path(args.data), args.label, rules=rules,
                       canary=overrides, change=change_from(args), dry_run=args.dry_run)
    verdict = result.verdict
    if args.json:
        print_json({"challenge": result.details, "outcome": _outcome_json(result.outcome),
                    "refused": result.refused.verdict if result.refused else None, "dry_run": args.dry_run})
    else:
        print(_summary(result.details, args.name, args.env))
        for reason in verdict.reasons:
            print(f"  {reason}")
        if result.outcome is not None:
            print_outcome(result.outcome, False, _action_text(result.outcome, args), args.dry_run)
    if result.refused is not None:
        raise result.refused
    if verdict.decision == "rejected":
        raise ChallengerLost(f"{args.name} {verdict.challenger} did not beat {verdict.champion} in {args.env} on "
                             f"{verdict.metric}: {'; '.join(verdict.reasons)}")
    return 0


def _summary(details: dict, name: str, environment: str) -> str:
    metric = details["metric"]
    if details["champion"] is None:
        return (f"{name} {details['challenger']}: first model in {environment} ({metric} = "
                f"{details['challenger_value']:.4f} on {details['rows']} rows of {details['dataset']})")
    return (f"{name} {details['challenger']} vs champion {details['champion']} in {environment} on {details['rows']} "
            f"rows of {details['dataset']}: {metric} {details['challenger_value']:.4f} vs "
            f"{details['champion_value']:.4f} ({details['direction']}): {details['decision']}")


def _action_text(outcome: Outcome, args: argparse.Namespace) -> str:
    if outcome.action == "deploy":
        return f"deployed {args.name} {outcome.after} to {args.env}"
    steps = outcome.details.get("steps") or []
    plan = f"; then {', '.join(f'{s:g}%' for s in steps)}" if steps else ""
    return f"canary {args.name} {outcome.after} in {args.env}: {outcome.details['weight']:g}% of traffic{plan}"


def _outcome_json(outcome: Outcome | None) -> dict | None:
    return None if outcome is None else dataclasses.asdict(outcome)
