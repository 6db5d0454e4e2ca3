"""policy.toml at the store root: the gates every deployment change into an environment must pass.

A store without the file keeps the behaviour it had before governance: no gates. An environment the file does not
name has no gates either, unless the file has a `[default]` table, which applies to every environment not named.
A file that cannot be parsed or validated refuses every gated change (InvalidPolicy naming the line and field):
a typo must never quietly switch the gates off.
"""
from __future__ import annotations

import difflib
import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelstore.errors import InvalidPolicy
from modelstore.toml_model import parse_toml_model

POLICY_FILE = "policy.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CanaryPlan(_Strict):
    """How a canary started for the environment by `onnxgate challenge` climbs, unless its flags say otherwise."""

    weight: float = Field(default=10.0, gt=0, le=100)
    steps: list[float] = Field(default_factory=list)
    interval_s: float | None = Field(default=None, gt=0)


class GateRules(_Strict):
    """The gates of one environment, or of one model in it."""

    min_metrics: dict[str, float] = Field(default_factory=dict, description="metric -> lowest value allowed "
                                          "(measured by onnxgate evaluate preferred over given at export)")
    max_metrics: dict[str, float] = Field(default_factory=dict, description="metric -> highest value allowed, e.g. "
                                          "ece, fairness_delta, log_loss")
    min_training_samples: int | None = Field(default=None, ge=0)
    require_parity: bool = Field(default=True, description="the export's parity check passed")
    require_node_compatible: bool = Field(default=False, description="the Node check passed at export")
    verify_sha256: bool = Field(default=True, description="every file matches metadata.json when the change is made")
    require_signature: bool = Field(default=False, description="imported from a package whose signature was checked")
    approvals: int = Field(default=0, ge=0, description="distinct approvers required")
    self_approval: bool = Field(default=False, description="whether the actor's own approval counts")
    requires: list[str] = Field(default_factory=list, description="environments the version must have been deployed "
                                "to first")
    rollback_approvals: int = Field(default=0, ge=0, description="approvals a manual rollback to a version needs")
    canary: CanaryPlan = Field(default_factory=CanaryPlan)

    @field_validator("min_metrics", "max_metrics")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for name, limit in value.items():
            if not math.isfinite(limit):
                raise ValueError(f"limit of {name!r} must be a finite number")
        return value


class EnvironmentPolicy(GateRules):
    models: dict[str, GateRules] = Field(default_factory=dict, description="model name -> the keys that differ for "
                                         "it ([environments.ENV.models.NAME]); the others are the environment's")

    def for_model(self, model: str) -> GateRules:
        own = self.models.get(model)
        if own is None:
            return self
        return GateRules.model_validate({**self.model_dump(exclude_unset=True, exclude={"models"}),
                                         **own.model_dump(exclude_unset=True)})


class GovernancePolicy(_Strict):
    environments: dict[str, EnvironmentPolicy] = Field(default_factory=dict)
    default: EnvironmentPolicy | None = Field(default=None, description="for environments not named")

    def for_environment(self, environment: str) -> EnvironmentPolicy | None:
        return self.environments.get(environment, self.default)

    def rules(self, model: str, environment: str) -> GateRules | None:
        """The gates a version of `model` passes to enter `environment`; None: not gated."""
        rules = self.for_environment(environment)
        return rules.for_model(model) if rules is not None else None


def parse_policy(raw: bytes, source: str) -> GovernancePolicy:
    """The policy in `raw`; InvalidPolicy names `source`, the line and the field of the first problem."""
    return parse_toml_model(raw, source, GovernancePolicy, InvalidPolicy, _suggestion)


def _suggestion(location: tuple[str, ...]) -> str:
    """' (did you mean ...?)' for an unknown field close to a known one of the table it is in."""
    parents = location[:-1]
    if parents[:1] == ("environments",):
        parents = parents[2:]
    elif parents[:1] == ("default",):
        parents = parents[1:]
    else:
        parents = None
    if parents is not None and parents[:1] == ("models",):
        parents = parents[2:]
    if parents is None:
        model: type[BaseModel] = GovernancePolicy
    else:
        model = CanaryPlan if parents == ("canary",) else EnvironmentPolicy
    close = difflib.get_close_matches(location[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
