"""The SLO judge: is a canary (or a freshly promoted version) worse than what it replaces, and what to do about it.

Pure: no I/O, no clock reads. `judge` compares two window summaries; `RolloutJudge` keeps, per model and environment,
the little state the decision needs (consecutive breaches, when the last breach was, the stable version's last
figures) and turns verdicts into decisions that gateway.controller applies as registry operations
(modelstore.rollout: RollbackCanary, AdvanceCanary, RollbackBake, EndBake), which carry the state the judge saw, so
that several workers reaching the same decision apply it once.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from gateway.guardrails import QualityFigures, QualityPair, prediction_drift_check, quality_check
from gateway.traffic import Arm, ArmWindows, WindowSummary
from modelstore.clock import epoch_seconds
from modelstore.registry import Deployment
from modelstore.rollout import next_step
from modelstore.slo import SloLimits, resolve_limits

VerdictKind = Literal["healthy", "breach", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    reasons: tuple[str, ...]
    figures: dict[str, float | int | str | None]
    causes: tuple[str, ...] = ()  # for a breach: "error_rate", "latency", "prediction_drift", "quality" (a metric label)


def judge(candidate: WindowSummary, reference: WindowSummary, limits: SloLimits,
          quality: QualityPair | None = None) -> Verdict:
    """Judge `candidate` (the canary, or the new stable during its bake) against `reference` (the stable arm, or the
    previous version's kept figures).

    The error rate breaches when either the share of failed requests or the mean of each source's error rate (one
    vote per source, counted once `min_sources` sources sent requests: one source's flood of good requests cannot
    dilute the others' failures) is above max_error_rate. Latencies are per unit of work.

    Each check needs `min_requests` in the arms it reads: the error rate and the absolute latency limit read the
    candidate only, the relative latency limit reads both. A candidate below the minimum is inconclusive whatever
    its figures; a reference below it leaves the relative check undone, so the verdict is a breach if another check
    failed and otherwise inconclusive (never healthy on half the evidence).

    When set, prediction drift and quality are judged the same way, each on its own minimum (predicted rows,
    labelled rows) in both arms. Prediction drift is judged for classifiers only: when neither arm predicted a class
    in the window (a regressor) it is noted as not applicable, which does not hold the verdict back. `quality` None
    means the quality check does not apply here (a bake: there is no second arm whose answers are labelled).
    """
    figures: dict[str, float | int | str | None] = {
        "candidate_version": candidate.version, "reference_version": reference.version,
        "candidate_requests": candidate.requests, "reference_requests": reference.requests,
        "candidate_error_rate": candidate.error_rate, "reference_error_rate": reference.error_rate,
        "candidate_latency_ms": _rounded(candidate.latency_ms), "reference_latency_ms": _rounded(reference.latency_ms),
        "quantile": limits.latency_quantile, "max_error_rate": limits.max_error_rate,
        "max_latency_ms": limits.max_latency_ms, "latency_limit_ms": None, "window_s": limits.window_s,
        "candidate_sources": candidate.sources, "candidate_failing_sources": candidate.failing_sources,
        "candidate_source_error_rate": _rounded(candidate.source_error_rate), "min_sources": limits.min_sources,
    }
    if candidate.requests < limits.min_requests:
        return Verdict("inconclusive", (f"{candidate.requests} requests to {candidate.version or 'the candidate'} in "
                                        f"the window, fewer than {limits.min_requests}",), figures)
    quantile = f"p{limits.latency_quantile * 100:g}"
    breaches: list[str] = []
    causes: list[str] = []
    notes: list[str] = []
    error_rate = candidate.errors / candidate.requests
    source_rate = candidate.source_error_rate
    if error_rate > limits.max_error_rate:
        breaches.append(f"error rate {error_rate:.2%} above {limits.max_error_rate:.2%}")
        causes.append("error_rate")
    elif candidate.sources >= limits.min_sources and source_rate is not None and source_rate > limits.max_error_rate:
        breaches.append(f"error rate per source {source_rate:.2%} above {limits.max_error_rate:.2%} "
                        f"({candidate.failing_sources} of {candidate.sources} sources saw failures)")
        causes.append("error_rate")
    latency_ms = candidate.latency_ms
    if limits.max_latency_ms is not None and latency_ms is not None and latency_ms > limits.max_latency_ms:
        breaches.append(f"{quantile} latency {latency_ms:.2f} ms above the {limits.max_latency_ms:g} ms limit")
        causes.append("latency")
    if reference.requests >= limits.min_requests and reference.latency_ms is not None and latency_ms is not None:
        limit_ms = max(limits.max_latency_ratio * reference.latency_ms, reference.latency_ms + limits.latency_margin_ms)
        figures["latency_limit_ms"] = _rounded(limit_ms)
        if latency_ms > limit_ms:
            breaches.append(f"{quantile} latency {latency_ms:.2f} ms above {limit_ms:.2f} ms "
                            f"(reference {reference.latency_ms:.2f} ms)")
            if "latency" not in causes:
                causes.append("latency")
    else:
        notes.append(f"{reference.requests} requests to {reference.version or 'the reference'}, fewer than "
                     f"{limits.min_requests}: latency not compared")
    remarks: list[str] = []  # said, without holding the verdict back
    for check in (prediction_drift_check(candidate, reference, limits, figures),
                  quality_check(quality, limits, figures) if quality is not None else None):
        if check is None:
            continue
        kind, text, cause = check
        if kind == "breach":
            breaches.append(text)
            causes.append(cause)
        else:
            (notes if kind == "undone" else remarks).append(text)
    if breaches:
        return Verdict("breach", tuple(breaches + notes + remarks), figures, tuple(causes))
    return Verdict("inconclusive" if notes else "healthy", tuple(notes + remarks), figures)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


DecisionAction = Literal["keep", "rollback_canary", "advance", "promote", "rollback_bake", "end_bake"]


@dataclass(frozen=True)
class Decision:
    action: DecisionAction
    verdict: Verdict | None = None
    version: str | None = None
    expected_weight: float | None = None
    next_weight: float | None = None

    def details(self) -> dict:
        """What goes into last_rollback and the audit entry: the reasons and the measured figures."""
        if self.verdict is None:
            return {}
        return {"verdict": self.verdict.kind, "reasons": list(self.verdict.reasons), "causes": list(self.verdict.causes),
                "figures": self.verdict.figures}


KEEP = Decision("keep")

RECENT_WINDOWS = 30
"""Judged windows each RolloutJudge keeps for the dashboard: five minutes at the default 10 s window."""


@dataclass(frozen=True)
class JudgedWindow:
    """One window the judge read: each arm's figures, the limits they were held to, and the verdict (None for a
    stable version's window read with nothing to judge against it, only kept as the reference)."""

    at: float
    arms: dict[str, WindowSummary]
    limits: SloLimits
    verdict: Verdict | None = None

    def as_json(self) -> dict:
        figures = self.verdict.figures if self.verdict is not None else {}
        return {
            "at": self.at,
            "verdict": self.verdict.kind if self.verdict is not None else None,
            "arms": {arm: {"version": summary.version, "requests": summary.requests, "errors": summary.errors,
                           "error_rate": _rounded(summary.error_rate), "latency_ms": _rounded(summary.latency_ms)}
                     for arm, summary in self.arms.items()},
            "quantile": self.limits.latency_quantile,
            "max_error_rate": self.limits.max_error_rate,
            "max_latency_ms": self.limits.max_latency_ms,
            "latency_limit_ms": figures.get("latency_limit_ms"),
        }


class RolloutJudge:
    """The rollout state machine of one model in one environment (one instance per gateway worker).

    Called every tick (say once a second); judges once per window, so consecutive verdicts read disjoint
    observations (but for at most one shared slot). A canary is rolled back after `breaches_to_rollback` breached
    windows in a row. It steps up once a whole `interval_s` has passed since its step began and since its last
    breach, and the latest window is healthy; the step to 100 promotes. After a promotion, until bake.until, the new
    stable is judged the same way against the previous version's last figures, kept from before the promotion; without
    them only the checks that need no reference (error rate, absolute latency) can breach.
    """

    def __init__(self, model: str, environment: str, defaults: SloLimits = SloLimits()) -> None:
        self.model = model
        self.environment = environment
        self.defaults = defaults
        self.last_verdict: Verdict | None = None
        self.recent: deque[JudgedWindow] = deque(maxlen=RECENT_WINDOWS)  # kept across subjects: what led to a rollback
        self._subject: tuple | None = None
        self._breaches = 0
        self._last_breach_at: float | None = None
        self._judged_at = 0.0
        self._baseline: WindowSummary | None = None

    def tick(self, deployment: Deployment, windows: ArmWindows, now: float,
             quality: QualityFigures | None = None) -> Decision:
        """`quality`: the latest live quality figures by (version, arm), when a quality source reports any."""
        limits = resolve_limits(deployment.slo, self.defaults)
        if deployment.canary is not None:
            return self._judge_canary(deployment, windows, now, limits, quality or {})
        if deployment.bake is not None and now < epoch_seconds(deployment.bake.until):
            return self._judge_bake(deployment, windows, now, limits)
        self._follow(("stable", deployment.version), now)
        if self._due(now, limits):
            stable = self._keep_baseline(deployment, windows, now, limits)
            self.recent.append(JudgedWindow(now, {"stable": stable}, limits))
        return KEEP

    def _follow(self, subject: tuple, now: float) -> None:
        """A new thing to judge starts a new count, and its first verdict comes one window from now."""
        if subject != self._subject:
            self._subject = subject
            self._breaches = 0
            self._last_breach_at = None
            self._judged_at = now
            self.last_verdict = None

    def _due(self, now: float, limits: SloLimits) -> bool:
        if now - self._judged_at < limits.window_s:
            return False
        self._judged_at = now
        return True

    def _summary(self, windows: ArmWindows, arm: Arm, version: str, now: float, limits: SloLimits) -> WindowSummary:
        return windows.summary(arm, version, now, limits.window_s, limits.latency_quantile)

    def _keep_baseline(self, deployment: Deployment, windows: ArmWindows, now: float, limits: SloLimits) -> WindowSummary:
        stable = self._summary(windows, "stable", deployment.version, now, limits)
        if stable.requests >= limits.min_requests:
            self._baseline = stable
        return stable

    def _count(self, verdict: Verdict, now: float, limits: SloLimits) -> bool:
        """Record a verdict; True when the breaches in a row reach the rollback count."""
        self.last_verdict = verdict
        if verdict.kind != "breach":
            self._breaches = 0
            return False
        self._breaches += 1
        self._last_breach_at = now
        return self._breaches >= limits.breaches_to_rollback

    def _judge_canary(self, deployment: Deployment, windows: ArmWindows, now: float, limits: SloLimits,
                      quality: QualityFigures) -> Decision:
        canary = deployment.canary
        self._follow(("canary", canary.version, canary.started_at), now)
        if not self._due(now, limits):
            return KEEP
        stable = self._keep_baseline(deployment, windows, now, limits)
        pair = QualityPair(quality.get((canary.version, "canary")), quality.get((deployment.version, "stable")))
        candidate = self._summary(windows, "canary", canary.version, now, limits)
        verdict = judge(candidate, stable, limits, pair)
        self.recent.append(JudgedWindow(now, {"stable": stable, "canary": candidate}, limits, verdict))
        if self._count(verdict, now, limits):
            return Decision("rollback_canary", verdict, canary.version, canary.weight)
        target = next_step(canary)
        if verdict.kind != "healthy" or target is None or canary.interval_s is None:
            return Decision("keep", verdict, canary.version, canary.weight)
        calm_since = max(epoch_seconds(canary.step_started_at), self._last_breach_at or 0.0)
        if now - calm_since < canary.interval_s:
            return Decision("keep", verdict, canary.version, canary.weight)
        return Decision("promote" if target >= 100 else "advance", verdict, canary.version, canary.weight, target)

    def _judge_bake(self, deployment: Deployment, windows: ArmWindows, now: float, limits: SloLimits) -> Decision:
        bake = deployment.bake
        self._follow(("bake", deployment.version, bake.until), now)
        if not self._due(now, limits):
            return KEEP
        reference = self._baseline
        if reference is None or reference.version != bake.previous_version:
            reference = WindowSummary(quantile=limits.latency_quantile, version=bake.previous_version)
        baked = self._summary(windows, "stable", deployment.version, now, limits)
        verdict = judge(baked, reference, limits)
        self.recent.append(JudgedWindow(now, {"stable": baked}, limits, verdict))
        if self._count(verdict, now, limits):
            return Decision("rollback_bake", verdict, deployment.version)
        return Decision("keep", verdict, deployment.version)


def shadow_verdict(deployment: Deployment, windows: ArmWindows, now: float,
                   defaults: SloLimits = SloLimits()) -> Verdict | None:
    """How the shadow version did against stable on the same requests over the last window; None without a shadow.
    Reported, never acted on: a shadow answers nobody."""
    if deployment.shadow is None:
        return None
    limits = resolve_limits(deployment.slo, defaults)
    shadow = windows.summary("shadow", deployment.shadow.version, now, limits.window_s, limits.latency_quantile)
    stable = windows.summary("stable", deployment.version, now, limits.window_s, limits.latency_quantile)
    return judge(shadow, stable, limits)


# --- the early test: a canary that fails is out before its window ends -----------------------------------------

EARLY_BAD_RATE = 0.2
"""H1 of the sequential test: a canary failing one request in five is clearly bad. Lower rates are left to windows."""
EARLY_ALPHA = 1e-6
EARLY_THRESHOLD = math.log(1 / EARLY_ALPHA)
"""Under H0 (the canary fails no more often than the reference rate) the likelihood ratio is a martingale, so it
ever reaches 1/alpha with probability at most alpha (Ville's inequality)."""
MIN_REFERENCE_RATE = 0.001
"""H0's floor, for an SLO allowing no error at all (max_error_rate 0) and a stable version that never failed."""
ONE_SOURCE_FAILURES = 50
"""Failures from a single source that can decide alone; failures from two sources or more need no count. Fifty is the
issue's target (withheld within 50 of its requests): it holds even when every request comes from one address (a
gateway behind a proxy with no trusted routing header), and a client must find 50 inputs that fail the canary but not
stable (a real regression) to have it withheld alone."""


class EarlyFailureTest:
    """Wald's sequential probability ratio test on one canary's failures, in its CUSUM form (the log-likelihood
    ratio restarts from 0 whenever it would go below, so that a canary which turns bad after a healthy hour is
    caught as fast as one bad from the start): H0 = the canary fails at the reference rate, max(stable's observed
    rate, max_error_rate); H1 = it fails at EARLY_BAD_RATE. Evaluated in O(1) on each confirmed failure (the canary
    failed with a 5xx and stable answered the same request: an input that fails both is no evidence against the
    canary), from the canary's request count; successes in between are applied in one step.

    Conclusive when the statistic reaches EARLY_THRESHOLD and the failures of the current run came from at least two
    sources, or number ONE_SOURCE_FAILURES: one client that knows inputs the canary fails on (they get stable's
    answer anyway) cannot have it withheld cheaply on its own. A slow canary is never decided here: only windows
    judge latency."""

    def __init__(self, version: str, subject: tuple) -> None:
        self.version = version
        self.subject = subject
        self.statistic = 0.0
        self.failures = 0
        self.run_failures = 0
        self.requests_seen = 0
        self.reference_rate = 0.0
        self._first_source: int | None = None
        self._several_sources = False

    def failed(self, canary_requests: int, source: str | None, reference_rate: float) -> bool:
        """Count a confirmed failure; `canary_requests` is the canary's request count so far, this one included.
        True when the evidence is conclusive."""
        self.failures += 1
        reference_rate = self.reference_rate = max(reference_rate, MIN_REFERENCE_RATE)
        if reference_rate >= EARLY_BAD_RATE / 2:  # stable itself fails that often: no clear line to draw early
            self.requests_seen = canary_requests
            return False
        others = max(0, canary_requests - self.requests_seen - 1)
        self.requests_seen = canary_requests
        statistic = self.statistic + others * math.log((1 - EARLY_BAD_RATE) / (1 - reference_rate))
        if statistic <= 0.0:
            statistic = 0.0
            self.run_failures = 0
            self._several_sources = False
        self.statistic = statistic + math.log(EARLY_BAD_RATE / reference_rate)
        key = hash(source)
        if self.run_failures == 0:
            self._first_source = key
        elif key != self._first_source:
            self._several_sources = True
        self.run_failures += 1
        return self.statistic >= EARLY_THRESHOLD and (self._several_sources
                                                      or self.run_failures >= ONE_SOURCE_FAILURES)

    def verdict(self, canary_requests: int, canary_errors: int) -> Verdict:
        figures: dict[str, float | int | str | None] = {
            "candidate_version": self.version, "candidate_requests": canary_requests,
            "candidate_errors": canary_errors,
            "candidate_error_rate": round(canary_errors / canary_requests, 4) if canary_requests else None,
            "confirmed_failures": self.failures, "run_failures": self.run_failures,
            "failing_sources": "several" if self._several_sources else "one",
            "sequential_statistic": round(self.statistic, 3), "sequential_threshold": round(EARLY_THRESHOLD, 3),
            "h0_error_rate": round(self.reference_rate, 4), "h1_error_rate": EARLY_BAD_RATE,
            "decided": "early",
        }
        reason = (f"canary {self.version} failed {self.run_failures} requests that stable answered "
                  f"({canary_errors} failures in {canary_requests} requests): sequential test statistic "
                  f"{self.statistic:.1f} reached {EARLY_THRESHOLD:.1f} (H0 error rate {self.reference_rate:.2%}, "
                  f"H1 {EARLY_BAD_RATE:.0%})")
        return Verdict("breach", (reason,), figures, ("error_rate",))
