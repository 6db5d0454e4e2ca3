"""The ops API's request bodies and query, decoded at the edge: a body that is not JSON or does not fit its model is
a 400; an SLO that parses but is out of range is a 422 (InvalidSloPolicy, from modelstore.slo)."""
from __future__ import annotations

from typing import Annotated, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import InvalidInput
from modelstore.errors import InvalidSloPolicy
from modelstore.slo import SloPolicy

Percent = Annotated[float, Field(gt=0, le=100)]
MAX_REASON = 1000
MAX_BODY_BYTES = 64 * 1024
"""An ops API body over this is refused (413) as it arrives."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=MAX_REASON, description="why, for the audit log")


class DryRunBody(Body):
    dry_run: bool = Field(default=False, description="check the change against the gates; change nothing")


class DeployBody(DryRunBody):
    version: str = Field(min_length=1, max_length=128, description="the version to make stable (or 'latest')")


class CanaryBody(DryRunBody):
    version: str = Field(min_length=1, max_length=128, description="the version to canary (or 'latest')")
    weight: Percent | None = Field(default=None, description="percent of traffic, above 0 and at most 100 (default: "
                                   "the first step)")
    steps: list[Percent] = Field(default_factory=list, max_length=100, description="weights to climb to, strictly "
                                 "increasing (steps at or below weight are skipped)")
    interval_s: float | None = Field(default=None, gt=0, description="healthy seconds per step (needed with steps)")
    slo: dict | None = Field(default=None, description="SLO overrides (modelstore.slo.SloPolicy fields)")

    def slo_policy(self) -> SloPolicy | None:
        """The SLO given, checked: unknown fields or values out of range are an invalid SLO (422)."""
        if self.slo is None:
            return None
        try:
            policy = SloPolicy.model_validate(self.slo)
        except ValidationError as exc:
            error = exc.errors()[0]
            raise InvalidSloPolicy(f"invalid SLO policy: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None
        return policy.checked()


class PromoteBody(DryRunBody):
    bake_s: float | None = Field(default=None, ge=0, description="bake period if the deployment sets none")


class RollbackBody(DryRunBody):
    to: str | None = Field(default=None, min_length=1, max_length=128, description="stable version to return to "
                           "(no canary running)")


class ShadowBody(DryRunBody):
    version: str | None = Field(default=None, min_length=1, max_length=128, description="the version to shadow")
    weight: Percent = Field(default=100.0, description="percent of requests to mirror")
    stop: bool = Field(default=False, description="stop the running shadow (no version)")


class ApprovalBody(Body):
    environment: str = Field(min_length=1, max_length=64)
    reject: bool = Field(default=False, description="record a rejection instead")
    rollback: bool = Field(default=False, description="approve rolling back to the version, not deploying it")


class SnapshotBody(Body):
    name: str | None = Field(default=None, max_length=200, description="a label for the snapshot")


class RestoreBody(DryRunBody):
    pass


class RetrainCheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrainRunBody(Body):
    pass


B = TypeVar("B", bound=BaseModel)


def parse_body(raw: bytes, model: type[B]) -> B:
    """`raw` as `model`; an empty body is an empty object (every field has a default but the required ones)."""
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or "body"
        raise InvalidInput(f"invalid request body: {where}: {error['msg']}") from None
