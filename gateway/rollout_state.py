"""Everything one gateway worker tracks about the rollout of one model in one environment, in one object: what each arm
measured (the windows), the judge, the version withheld from routing before the registry says so, a decision still
to be recorded, and how the shadow compares with stable.

The flow: requests `record` into the windows (held per arm, and folded in HOLD_RECORDS at a time; reading `windows`
settles the answer ledger and folds first, so the judge and the early test see every request); every tick the
controller asks `decide`, which the judge answers; a rollback `withhold`s the bad version at once (the next request
already avoids it), then is recorded in the registry through the transition API; once the registry no longer serves
the withheld version, the withhold is `follow`ed away.
A canary's failures do not wait for the tick: each one that stable answered instead (`canary_failed`) feeds the early
test, which withholds the canary as soon as the evidence is conclusive and leaves the rollback `pending` for the
controller to record at its next tick.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from gateway.guardrails import QualityFigures
from gateway.judge import Decision, EarlyFailureTest, RolloutJudge, Verdict, shadow_verdict
from gateway.loader import LoadedModel
from gateway.metrics import GatewayMetrics
from gateway.shadow import ShadowTally, Tolerance
from gateway.traffic import Arm, ArmWindows
from modelstore.registry import CanaryState, Deployment
from modelstore.rollout import bake_active
from modelstore.slo import SloLimits, resolve_limits

HOLD_RECORDS = 64
"""Requests an arm's recordings are held for before they are counted into its window as one batch
(SlidingWindow.record_many): recording each one through the window, its lock and its ring cost ~6% of a small model's
request over HTTP with a canary in flight (bench/README.md)."""


Record = tuple[float, bool, float, str | None, np.ndarray | None]
"""A request as the windows record it: (latency per unit, ok, now, source, labels or None)."""


@dataclass
class HeldRecords:
    """One arm's recordings not yet in its window."""

    arm: Arm
    version: str
    records: list[Record] = field(default_factory=list)


class RolloutState:
    def __init__(self, model: str, environment: str, defaults: SloLimits, metrics: GatewayMetrics,
                 tolerance: Tolerance, settle: Callable[[], None] = lambda: None) -> None:
        """`settle` records the answers not recorded yet (AnswerLedger.settle); reading `windows` calls it."""
        self.model = model
        self.environment = environment
        self.defaults = defaults
        self.metrics = metrics
        self.tolerance = tolerance
        self.settle = settle
        self._windows = ArmWindows(defaults.window_s)
        self._held: dict[str, HeldRecords] = {}
        self._fold_lock = threading.Lock()
        self.judge = RolloutJudge(model, environment, defaults)
        self.withheld: str | None = None
        self.pending: Decision | None = None
        self.shadow: ShadowTally | None = None
        self.early: EarlyFailureTest | None = None
        self.refusal: GateRefusal | None = None
        self.counts_classes = defaults.max_prediction_distance is not None
        self.quality: QualityFigures = {}  # the latest live quality figures, set by the controller

    # -- following the registry ------------------------------------------------------------------------------------

    def follow(self, deployment: Deployment, canary_loaded: bool) -> None:
        """Called after each reload with what the registry now says: windows sized for the deployment's judging
        window (a fresh ring when it changes: a new SLO starts a new count), a withhold forgotten once the registry no
        longer serves the withheld version, and the canary weight in effect published."""
        self.fold()  # what was held, measured under the limits it was recorded under
        limits = resolve_limits(deployment.slo, self.defaults)
        if limits.window_s != self._windows.window_s:
            self._windows = ArmWindows(limits.window_s)
        self.counts_classes = limits.max_prediction_distance is not None
        serving = (deployment.version, deployment.canary.version if deployment.canary else None)
        if self.withheld is not None and self.withheld not in serving:
            self.withheld = None
        self.publish_weight(deployment, canary_loaded)

    def withhold(self, version: str, deployment: Deployment, canary_loaded: bool) -> None:
        """Stop routing to `version` (a canary, or a stable version in a failed bake) at once, in memory."""
        self.withheld = version
        self.publish_weight(deployment, canary_loaded)

    def effective_weight(self, deployment: Deployment, canary_loaded: bool) -> float:
        """The percentage of traffic the canary really gets: 0 when it is not loaded or has been withheld."""
        canary = deployment.canary
        if canary is None or not canary_loaded or self.withheld == canary.version:
            return 0.0
        return canary.weight

    def publish_weight(self, deployment: Deployment, canary_loaded: bool) -> None:
        self.metrics.canary_weight.labels(self.model, self.environment).set(
            self.effective_weight(deployment, canary_loaded))

    # -- measuring -------------------------------------------------------------------------------------------------

    @property
    def windows(self) -> ArmWindows:
        """The arms' windows, every answer so far recorded and folded in."""
        self.settle()
        self.fold()
        return self._windows

    def record(self, arm: Arm, version: str, latency_s: float, ok: bool, now: float,
               source: str | None = None) -> None:
        """One request: `latency_s` per unit of work, `source` the routing key or client address that sent it."""
        self.record_answer(arm, version, latency_s, now, source, None, ok)

    def record_answer(self, arm: Arm, version: str, latency_s: float, now: float, source: str | None,
                      labels: np.ndarray | None, ok: bool = True) -> None:
        """An answered request: `record`, and `record_classes` of its label output (None when there is none), in
        one call."""
        self.record_many(arm, version, [(latency_s, ok, now, source, labels)])

    def record_many(self, arm: Arm, version: str, records: list[Record]) -> None:
        """Requests of one arm as (latency per unit, ok, now, source, labels or None), in the order they were
        answered: `record_answer` of each (the answer ledger's call)."""
        held = self._held.get(arm)
        if held is None or held.version != version:
            held = self._hold(arm, version)
        held.records += records
        if len(held.records) >= HOLD_RECORDS:
            self.fold()

    def record_classes(self, arm: Arm, version: str, labels: np.ndarray, now: float) -> None:
        """The classes a request `record`ed as answered was predicted as (its label output), while prediction drift
        is judged."""
        self.fold()
        if self.counts_classes:
            self._windows.record_classes(arm, version, predicted_counts(labels), now)

    def _hold(self, arm: Arm, version: str) -> HeldRecords:
        """A fresh hold for `arm` measuring `version`, what the arm held for another version folded in first (the
        window then restarts for the new version in order, as it would have one request at a time)."""
        self.fold()
        held = self._held[arm] = HeldRecords(arm, version)
        return held

    def fold(self) -> None:
        """Every held recording into the windows, and the classes of its labels while they are counted. Safe against
        recordings made meanwhile: only the ones taken are removed."""
        with self._fold_lock:
            for held in list(self._held.values()):
                records = held.records
                if not (taken := len(records)):
                    continue
                batch = records[:taken]
                del records[:taken]
                self._windows.record_many(held.arm, held.version, batch)
                if self.counts_classes:
                    for _, _, now, _, labels in batch:
                        if labels is not None:
                            self._windows.record_classes(held.arm, held.version, predicted_counts(labels), now)

    def canary_failed(self, deployment: Deployment, canary_loaded: bool, source: str | None) -> bool:
        """A canary request failed (a 5xx) and stable answered it instead: feed the early test, and when it is
        conclusive withhold the canary now and leave its rollback for the controller to record. O(1). True when this
        failure withheld the canary."""
        canary = deployment.canary
        if canary is None or self.withheld == canary.version or self.pending is not None:
            return False
        windows = self.windows
        window = windows.window("canary", canary.version)
        if window is None:
            return False
        subject = (canary.version, canary.started_at)
        if self.early is None or self.early.subject != subject:
            self.early = EarlyFailureTest(canary.version, subject)
        stable = windows.window("stable", deployment.version)
        stable_rate = stable.total_errors / stable.total_requests if stable and stable.total_requests else 0.0
        max_error_rate = resolve_limits(deployment.slo, self.defaults).max_error_rate
        if not self.early.failed(window.total_requests, source, max(stable_rate, max_error_rate)):
            return False
        verdict = self.early.verdict(window.total_requests, window.total_errors)
        self.withhold(canary.version, deployment, canary_loaded)
        self.pending = Decision("rollback_canary", verdict, canary.version, canary.weight)
        return True

    def record_shadow(self, stable: LoadedModel, shadow: LoadedModel, stable_out: dict, shadow_out: dict | None,
                      latency_s: float, unit_latency_s: float, now: float) -> None:
        self.record("shadow", shadow.version, unit_latency_s, shadow_out is not None, now)
        if self.shadow is None or self.shadow.version != shadow.version:
            self.shadow = ShadowTally(self.model, shadow.version, self.environment)
        self.shadow.record(stable, stable_out, shadow_out, latency_s, self.metrics, self.tolerance)

    # -- judging ---------------------------------------------------------------------------------------------------

    def decide(self, deployment: Deployment, canary_failure: str | None, now: float) -> Decision:
        """What to do now: a decision whose recording failed first, then a canary that could not load, then the
        judge's verdict on the windows."""
        if self.pending is not None:
            decision, self.pending = self.pending, None
            return decision
        canary = deployment.canary
        if canary is not None and canary_failure is not None:
            return load_failure(canary, canary_failure)
        decision = self.judge.tick(deployment, self.windows, now, self.quality)
        if decision.action == "keep" and deployment.bake is not None and not bake_active(deployment, now):
            return Decision("end_bake", None, deployment.version)  # held to the end: recorded, and unwatched
        return decision

    # -- reporting -------------------------------------------------------------------------------------------------

    def describe(self, deployment: Deployment, canary_loaded: bool, shadow_loaded: bool, now: float) -> dict:
        """The rollout part of /health."""
        report: dict = {}
        if (canary := deployment.canary) is not None:
            report["canary"] = {"version": canary.version, "weight": canary.weight,
                                "effective_weight": self.effective_weight(deployment, canary_loaded),
                                "loaded": canary_loaded, "withheld": self.withheld == canary.version,
                                "steps": canary.steps, "interval_s": canary.interval_s,
                                "step_started_at": canary.step_started_at}
        if (shadow := deployment.shadow) is not None:
            verdict = shadow_verdict(deployment, self.windows, now, self.defaults)
            tally = self.shadow if self.shadow is not None and self.shadow.version == shadow.version else None
            report["shadow"] = {"version": shadow.version, "weight": shadow.weight, "loaded": shadow_loaded,
                                **(tally.report() if tally else {"mirrored": 0}),
                                "verdict": verdict.kind if verdict else None,
                                "verdict_reasons": list(verdict.reasons) if verdict else []}
        if (bake := deployment.bake) is not None:
            report["bake"] = {"previous_version": bake.previous_version, "until": bake.until,
                              "active": bake_active(deployment, now)}
        if (verdict := self.judge.last_verdict) is not None:
            report["last_verdict"] = {"kind": verdict.kind, "reasons": list(verdict.reasons), "figures": verdict.figures}
        refusal = self.refusal
        if refusal is not None and canary is not None and canary.version == refusal.version:
            report["canary"]["promotion_refused"] = refusal.report()
        return report

    # -- the governance gates' refusals --------------------------------------------------------------------------

    def refused(self, decision: Decision, reason: str, verdict: dict, now: float) -> None:
        self.refusal = GateRefusal(decision.action, decision.version, decision.expected_weight, reason, verdict, now)

    def waits_after_refusal(self, decision: Decision, now: float, retry_s: float) -> bool:
        """Whether `decision` is one the gates refused less than `retry_s` ago (the canary then stays where it is)."""
        refusal = self.refusal
        return (refusal is not None and (refusal.action, refusal.version, refusal.weight)
                == (decision.action, decision.version, decision.expected_weight) and now - refusal.at < retry_s)


@dataclass(frozen=True)
class GateRefusal:
    """The last automatic step the governance gates refused: why, with the gates' figures."""

    action: str
    version: str
    weight: float | None
    reason: str
    verdict: dict
    at: float

    def report(self) -> dict:
        failing = [check for check in self.verdict.get("checks", []) if not check.get("passed")]
        return {"action": self.action, "reason": self.reason, "failing_checks": failing,
                "at": datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def predicted_counts(labels: np.ndarray) -> list[tuple[str, int]]:
    """(class, rows) in a label output; classes as text, so that int and string labels count alike."""
    if labels.size == 1:
        return [(_label_text(labels.item()), 1)]
    unique, counts = np.unique(labels, return_counts=True)
    return [(_label_text(value), count) for value, count in zip(unique.tolist(), counts.tolist(), strict=True)]


def _label_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_failure(canary: CanaryState, error: str) -> Decision:
    verdict = Verdict("breach", (f"canary {canary.version} failed to load: {error}",),
                      {"candidate_version": canary.version}, ("load_failure",))
    return Decision("rollback_canary", verdict, canary.version, canary.weight)

