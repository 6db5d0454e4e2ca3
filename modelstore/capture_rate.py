"""A deployment's data capture rate: the share of its answered requests the gateway writes to the capture files
(monitoring/capture.py). Set through the transition API like every other deployment change, so it is audited and
replayed; it stays with the deployment through redeploys, canaries and rollbacks (as its SLO does)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from modelstore.backends import ModelRepository
from modelstore.deployments import RegistryOperation, require_deployment
from modelstore.errors import InvalidTransition
from modelstore.registry import RegistryData
from modelstore.transitions import Change, Outcome, transition


def check_rate(rate: float | None) -> float | None:
    if rate is not None and not (math.isfinite(rate) and 0 <= rate <= 1):
        raise InvalidTransition(f"a capture rate is a share between 0 and 1, got {rate}")
    return None if rate is None else float(rate)


@dataclass(frozen=True)
class SetCaptureRate(RegistryOperation):
    """`rate` of the environment's answered requests captured; None: back to the gateway's default."""

    model: str
    environment: str
    rate: float | None

    def apply(self, state: RegistryData, now: str, change: Change) -> Outcome:
        deployment = require_deployment(state, self.model, self.environment)
        previous = deployment.capture_rate
        rate = check_rate(self.rate)
        if previous == rate:
            return Outcome("capture", self.model, self.environment, False, before=deployment.version,
                           after=deployment.version)
        deployment.capture_rate = rate
        return Outcome("capture", self.model, self.environment, True, before=deployment.version,
                       after=deployment.version, details={"rate": rate, "previous_rate": previous})


def set_capture_rate(store: ModelRepository, name: str, environment: str, rate: float | None,
                     change: Change = Change()) -> Outcome:
    return transition(store, SetCaptureRate(name, environment, check_rate(rate)), change)
