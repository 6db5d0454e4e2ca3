"""Champion/challenger: measure a new version and an environment's stable one on the same holdout, and decide.

The challenger wins when its metric is at least (1 + min_improvement) times the champion's (for a lower-is-better
metric, the champion's is at least (1 + min_improvement) times the challenger's; for a higher-is-better metric whose
champion value is negative, r2 say, the gain is measured against its magnitude) and the lead is significant on that
holdout (governance.significance: McNemar's test for accuracy, else a paired bootstrap interval above zero). A winner
starts a canary through the transition API, so the environment's gates judge it; a loser is recorded as rejected; the
first model of a name in an environment (no champion) is deployed when it clears the gates. Every decision is one
`challenge` audit entry (event challenge_decided) holding both models' figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from governance.errors import ChallengeError, NotEvaluable
from governance.evaluate import Measurement, measure_model
from governance.metrics import LOWER_IS_BETTER, metric_of, task_metrics
from governance.resampled import resampled_metric
from governance.significance import CONFIDENCE, RESAMPLES, SEED, Interval, McNemar, mcnemar, paired_bootstrap
from modelstore.backends import ModelRepository
from modelstore.deployments import Deploy
from modelstore.errors import GateRefused
from modelstore.evaluations import record_evaluation
from modelstore.events import record_event
from modelstore.policy import CanaryPlan
from modelstore.rollout import start_canary
from modelstore.transitions import Change, Outcome, transition

DEFAULT_METRIC = {"classification": "f1", "regression": "rmse"}
Decision = Literal["won", "rejected", "first"]


@dataclass(frozen=True)
class ChallengeRules:
    """`metric` None: f1 for a classifier, rmse for a regressor."""

    metric: str | None = None
    min_improvement: float = 0.05
    resamples: int = RESAMPLES
    confidence: float = CONFIDENCE
    seed: int = SEED


@dataclass(frozen=True)
class CanaryOverrides:
    """The canary flags given on the command line; None: the policy's `canary` plan decides."""

    weight: float | None = None
    steps: tuple[float, ...] | None = None
    interval_s: float | None = None

    def over(self, plan: CanaryPlan) -> CanaryPlan:
        steps = list(self.steps) if self.steps is not None else plan.steps
        weight = self.weight if self.weight is not None else (steps[0] if self.steps else plan.weight)
        return CanaryPlan(weight=weight, steps=steps,
                          interval_s=self.interval_s if self.interval_s is not None else plan.interval_s)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    metric: str
    champion: str | None
    challenger: str
    champion_value: float | None
    challenger_value: float
    improvement: float | None  # relative (relative_improvement); None when the ratio has no value
    min_improvement: float
    margin_met: bool
    interval: Interval | None
    test: McNemar | None
    significant: bool
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "decision": self.decision, "metric": self.metric,
            "direction": "lower is better" if self.metric in LOWER_IS_BETTER else "higher is better",
            "champion": self.champion, "challenger": self.challenger,
            "champion_value": self.champion_value, "challenger_value": self.challenger_value,
            "margin": {"improvement": self.improvement, "required": self.min_improvement, "met": self.margin_met},
            "significance": {"significant": self.significant,
                             "interval": self.interval.to_json() if self.interval else None,
                             "mcnemar": self.test.to_json() if self.test else None},
            "reasons": self.reasons,
        }


@dataclass(frozen=True)
class ChallengeResult:
    """`outcome`: the canary (or, for a first model, the deploy) a winner started; `refused`: the gates' refusal of
    it (already recorded as a deployment_denied entry)."""

    verdict: Verdict
    details: dict  # what the `challenge` audit entry holds
    outcome: Outcome | None = None
    refused: GateRefused | None = None


def challenge(store: ModelRepository, name: str, version: str, environment: str, data: Path, label: str, *,
              rules: ChallengeRules = ChallengeRules(), canary: CanaryOverrides = CanaryOverrides(),
              change: Change = Change(), dry_run: bool = False) -> ChallengeResult:
    """Measure, decide, record the decision, and act on it (a dry run does only the first two and asks the gates)."""
    state = store.registry.read().state
    version = store.read_metadata(name, version).version
    deployment = state.deployment(name, environment)
    champion_version = deployment.version if deployment else None
    if champion_version == version:
        raise ChallengeError(f"{name} {version} is already the champion (stable version) in {environment}")
    if deployment is not None and deployment.canary is not None and deployment.canary.version != version:
        raise ChallengeError(f"a canary of {name} {deployment.canary.version} is running in {environment}; "
                             "promote it or roll it back before challenging")
    challenger = measure_model(store, name, version, data, label, change=change)
    champion = measure_model(store, name, champion_version, data, label, change=change) if champion_version else None
    verdict = decide(champion, challenger, rules)
    details = {**verdict.to_json(), "environment": environment, "dataset": challenger.record.dataset,
               "dataset_sha256": challenger.record.dataset_sha256, "rows": challenger.record.rows,
               "champion_metrics": champion.record.metrics if champion else None,
               "challenger_metrics": challenger.record.metrics}
    if not dry_run:
        record_evaluation(store, name, version, challenger.record, change)
        record_event(store, "challenge", name, environment, version, details, change)
    try:
        if verdict.decision == "first":
            outcome = transition(store, Deploy(name, environment, version), change, dry_run=dry_run)
        elif verdict.decision == "won":
            plan = canary.over(_policy_plan(store, name, environment))
            outcome = start_canary(store, name, version, environment, plan.weight, plan.steps, plan.interval_s,
                                   change, dry_run=dry_run)
        else:
            outcome = None
    except GateRefused as refused:
        return ChallengeResult(verdict, details, refused=refused)
    return ChallengeResult(verdict, details, outcome)


def decide(champion: Measurement | None, challenger: Measurement, rules: ChallengeRules) -> Verdict:
    task = challenger.predictions.task
    metric = rules.metric or DEFAULT_METRIC[task]
    _check_metric(metric, task, champion)
    challenger_value = _overall(metric, challenger)
    if champion is None:
        return Verdict("first", metric, None, challenger.version, None, challenger_value, None, rules.min_improvement,
                       True, None, None, True, ["no champion in the environment: the first model wins if it clears "
                                                "the gates"])
    champion_value = _overall(metric, champion)
    lower_is_better = metric in LOWER_IS_BETTER
    improvement = relative_improvement(champion_value, challenger_value, lower_is_better=lower_is_better)
    sign = -1.0 if lower_is_better else 1.0
    better = sign * (challenger_value - champion_value) > 0
    margin_met = better and (improvement is None or improvement >= rules.min_improvement)
    truth = challenger.holdout.labels

    def difference(rows: np.ndarray) -> np.ndarray:
        return sign * (resampled_metric(metric, truth, challenger.predictions, rows)
                       - resampled_metric(metric, truth, champion.predictions, rows))

    interval = paired_bootstrap(difference, len(truth), resamples=rules.resamples, confidence=rules.confidence,
                                seed=rules.seed)
    test = None
    if metric == "accuracy":
        test = mcnemar(champion.predictions.labels == truth, challenger.predictions.labels == truth)
        significant = test.favours_challenger(1 - rules.confidence)
    else:
        significant = interval.excludes_zero
    reasons = _reasons(metric, improvement, rules, margin_met, interval, test, significant)
    decision: Decision = "won" if margin_met and significant else "rejected"
    return Verdict(decision, metric, champion.version, challenger.version, champion_value, challenger_value,
                   improvement, rules.min_improvement, margin_met, interval, test, significant, reasons)


def relative_improvement(champion: float, challenger: float, *, lower_is_better: bool) -> float | None:
    """How much better the challenger is, relative to the champion: challenger/champion - 1 (higher is better;
    against |champion| when it is negative), champion/challenger - 1 (lower is better). None when the ratio has no
    value: a champion of 0 (higher is better) or a challenger of 0 (lower is better)."""
    if lower_is_better:
        return None if challenger == 0 else champion / challenger - 1
    return None if champion == 0 else (challenger - champion) / abs(champion)


def _check_metric(metric: str, task: str, champion: Measurement | None) -> None:
    known = task_metrics(task)
    if metric not in known:
        raise ChallengeError(f"metric {metric!r} is not one of a {task} model's: {', '.join(known)}")
    if champion is not None and champion.predictions.task != task:
        raise ChallengeError(f"the champion {champion.version} is a {champion.predictions.task} model and the "
                             f"challenger a {task} one: they cannot be compared")


def _overall(metric: str, measured: Measurement) -> float:
    value = metric_of(metric, measured.holdout.labels, measured.predictions)
    if not math.isfinite(value):
        reason = measured.record.parameters.get("omitted", {}).get(metric, "not defined on this holdout")
        raise NotEvaluable(f"{metric} of {measured.version} cannot decide the challenge: {reason}")
    return value


def _reasons(metric: str, improvement: float | None, rules: ChallengeRules, margin_met: bool,
             interval: Interval, test: McNemar | None, significant: bool) -> list[str]:
    shown = "not a ratio (a value of 0)" if improvement is None else f"{improvement:+.2%}"
    reasons = [f"{metric} improvement {shown}, needs >= {rules.min_improvement:+.2%}: "
               f"{'met' if margin_met else 'not met'}"]
    if interval.low is None:
        reasons.append(f"bootstrap interval undefined ({metric} undefined on some resample)")
    else:
        reasons.append(f"{rules.confidence:.0%} bootstrap interval of the gain [{interval.low:+.4g}, "
                       f"{interval.high:+.4g}]: {'excludes' if interval.excludes_zero else 'includes'} zero")
    if test is not None:
        reasons.append(f"McNemar p = {test.p_value:.4g} ({test.only_challenger} rows only the challenger gets right, "
                       f"{test.only_champion} only the champion): "
                       f"{'significant' if significant else 'not significant'} at {1 - rules.confidence:.2g}")
    return reasons


def _policy_plan(store: ModelRepository, name: str, environment: str) -> CanaryPlan:
    policy = store.read_policy()
    rules = policy.rules(name, environment) if policy is not None else None
    return rules.canary if rules is not None else CanaryPlan()
