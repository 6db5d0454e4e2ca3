"""The registry's content: every registered version and what each environment serves, and its JSON form.

Parsing is per entry: a version record or a deployment that fails validation (a malformed date, an invalid model
name, a wrong type) is set aside in `RegistryData.invalid` with the reason, and every other entry stays usable. A
write puts set-aside entries back verbatim, so no operation silently deletes what an operator wrote; an operation
that targets one replaces it (a deploy repairs a broken deployment). Only a file that is not a JSON object, or whose
header is wrong, is unreadable as a whole (CorruptRegistry).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Required

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator
from typing_extensions import TypedDict  # pydantic validates only this one before Python 3.12

from modelstore.clock import Timestamp
from modelstore.errors import CorruptRegistry, InvalidEntry, InvalidName, InvalidSloPolicy
from modelstore.slo import SloPolicy
from modelstore.versions import check_name, check_version

REGISTRY_SCHEMA_VERSION = 1

VersionStatus = Literal["registered", "deployed", "deprecated", "rolled_back", "archived"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationRecord(_Model):
    """What `onnxgate evaluate` measured on the artifact itself, on a holdout file: kept apart from the metrics given
    at export (VersionRecord.metrics), and preferred over them by the gates."""

    measured_at: Timestamp
    actor: str
    dataset: str = Field(description="the holdout file's name")
    dataset_sha256: str
    rows: int = Field(ge=0)
    task: Literal["classification", "regression"]
    label: str = Field(description="the label column")
    group: str | None = Field(default=None, description="the group column of the per-group metrics")
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    groups: dict[str, dict[str, FiniteFloat]] = Field(default_factory=dict, description="group value -> metrics")
    fairness_gaps: dict[str, FiniteFloat] = Field(default_factory=dict, description="metric -> largest gap between groups")
    parameters: dict[str, Any] = Field(default_factory=dict, description="how it was measured: averaging, ECE bins, "
                                       "noise scale, seed, metrics left out and why")


ApprovalStatus = Literal["approved", "rejected"]


class ApprovalRecord(_Model):
    """One reviewer's decision on a version for an environment; a reviewer's latest decision is the one that counts.
    `kind`: what is approved: deploying the version there, or rolling back to it."""

    actor: str
    status: ApprovalStatus
    at: Timestamp
    reason: str | None = None
    kind: Literal["deploy", "rollback"] = "deploy"


class VersionRecord(_Model):
    registered_at: Timestamp
    status: VersionStatus = "registered"
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    sha256: str | None = None
    training_samples: int | None = None
    signature_verified: bool = Field(default=False, description="imported from a package whose signature was checked")
    evaluation: EvaluationRecord | None = None
    approvals: dict[str, list[ApprovalRecord]] = Field(default_factory=dict, description="environment -> decisions")
    deployed_to: list[str] = Field(default_factory=list, description="environments it has been the stable version of")

    def approvals_for(self, environment: str, kind: str = "deploy") -> dict[str, ApprovalRecord]:
        """Each reviewer's latest decision of `kind` for the environment."""
        latest: dict[str, ApprovalRecord] = {}
        for record in self.approvals.get(environment, []):
            if record.kind == kind:
                latest[record.actor] = record
        return latest


class CanaryState(_Model):
    version: str
    weight: float = Field(ge=0, le=100, description="percent of traffic")
    steps: list[float] = Field(default_factory=list, description="weights to climb to, in order; 100 promotes")
    interval_s: float | None = None
    started_at: Timestamp
    step_started_at: Timestamp


class ShadowState(_Model):
    version: str
    weight: float = Field(ge=0, le=100, description="percent of requests mirrored")
    started_at: Timestamp


class BakeState(_Model):
    previous_version: str
    until: Timestamp


# `from` is a Python keyword, hence the functional form. The judge's figures ride along for the record.
RollbackRecord = TypedDict("RollbackRecord", {
    "kind": Required[Literal["canary", "bake", "stable"]],
    "from": Required[str],
    "to": Required[str],
    "at": Required[Timestamp],
    "reason": NotRequired[str | None],
    "weight": NotRequired[float],
    "bake_until": NotRequired[str],
    "verdict": NotRequired[str],
    "reasons": NotRequired[list[str]],
    "causes": NotRequired[list[str]],
    "figures": NotRequired[dict[str, Any]],
})
RollbackRecord.__pydantic_config__ = ConfigDict(extra="allow")  # what a caller adds to the record is kept


ROUTING_SALT = re.compile(r"[0-9a-f]{16,128}")


class Deployment(_Model):
    version: str
    deployed_at: Timestamp
    status: Literal["active", "rolled_back"] = "active"
    previous_version: str | None = None
    canary: CanaryState | None = None
    shadow: ShadowState | None = None
    bake: BakeState | None = None
    slo: SloPolicy | None = None
    last_rollback: RollbackRecord | None = None
    capture_rate: float | None = Field(
        default=None, ge=0, le=1, description="share of answered requests the gateway captures (gateway/capture.py); "
        "none: the gateway's capture_rate setting")
    routing_salt: str | None = Field(
        default=None, description="hex salt of the canary and shadow split's buckets (gateway/traffic.py), chosen "
        "when the deployment's first canary or shadow starts and kept for its life; none: unsalted buckets")

    @field_validator("routing_salt")
    @classmethod
    def _hex_salt(cls, value: str | None) -> str | None:
        if value is not None and not ROUTING_SALT.fullmatch(value):
            raise ValueError("routing_salt must be 16 to 128 lowercase hex digits")
        return value

    @field_validator("slo")
    @classmethod
    def _usable_slo(cls, value: SloPolicy | None) -> SloPolicy | None:
        """An SLO the judge cannot use makes the entry invalid where it is read, not the judge fail on every tick."""
        if value is not None:
            try:
                value.checked()
            except InvalidSloPolicy as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("last_rollback", mode="before")
    @classmethod
    def _kind_of_old_records(cls, value: object) -> object:
        """Stable rollbacks written before `kind` was recorded were the only kind without it."""
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "stable", **value}
        return value


class SnapshotRecord(_Model):
    """The stable version of every model in every environment at one moment (`onnxgate snapshot create`)."""

    name: str | None = None
    created_at: Timestamp
    actor: str
    revision: int = Field(ge=0, description="the registry revision it was taken at")
    deployments: dict[str, dict[str, str]] = Field(description="model -> environment -> stable version")


@dataclass(frozen=True)
class InvalidRegistryEntry:
    """An entry set aside at parse time: `section.name[.key]` holds `raw`, which fails for `reason`."""

    section: Literal["models", "deployments", "snapshots"]
    name: str
    key: str | None
    raw: Any
    reason: str

    @property
    def where(self) -> str:
        return ".".join(part for part in (self.section, self.name, self.key) if part is not None)

    def describe(self) -> str:
        return f"registry entry {self.where} is invalid: {self.reason}"


class RegistryData(_Model):
    schema_version: int = REGISTRY_SCHEMA_VERSION
    revision: int = Field(default=0, ge=0, description="how many changes were committed; each audit entry names its own")
    models: dict[str, dict[str, VersionRecord]] = Field(default_factory=dict)
    deployments: dict[str, dict[str, Deployment]] = Field(default_factory=dict)
    snapshots: dict[str, SnapshotRecord] = Field(default_factory=dict, description="id -> snapshot")
    invalid: list[InvalidRegistryEntry] = Field(default_factory=list, exclude=True)

    def deployment(self, name: str, environment: str) -> Deployment | None:
        return self.deployments.get(name, {}).get(environment)

    def environments(self) -> list[str]:
        return sorted({env for envs in self.deployments.values() for env in envs})

    def invalid_entry(self, section: str, name: str, key: str | None) -> InvalidRegistryEntry | None:
        """The set-aside entry at section.name.key, or covering the whole of section.name."""
        return next((entry for entry in self.invalid if entry.section == section and entry.name == name
                     and entry.key in (key, None)), None)

    def require_valid(self, section: str, name: str, key: str | None) -> None:
        entry = self.invalid_entry(section, name, key)
        if entry is not None:
            raise InvalidEntry(f"{entry.describe()}; fix it in the registry, or deploy a version to replace it")


HEADER_FIELDS = {"schema_version", "revision", "models", "deployments", "snapshots", "audit_head"}


def parse_registry(raw: bytes, source: str) -> RegistryData:
    """Parse registry bytes; `source` names the file in errors (a path, or a store-relative name)."""
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRegistry(f"{source}: registry is not valid JSON ({exc}); fix or restore it, it was left untouched") from None
    if not isinstance(payload, dict):
        raise CorruptRegistry(f"{source}: registry is invalid at (root): expected a JSON object; it was left untouched")
    unknown = sorted(set(payload) - HEADER_FIELDS)
    if unknown:
        raise CorruptRegistry(f"{source}: registry is invalid at {unknown[0]}: unknown field; it was left untouched")
    try:
        header = RegistryData.model_validate({k: payload[k] for k in ("schema_version", "revision") if k in payload})
    except ValidationError as exc:
        raise CorruptRegistry(f"{source}: registry is invalid at {_where(exc)}: {_first(exc)}; it was left untouched") from None
    if header.schema_version > REGISTRY_SCHEMA_VERSION:
        raise CorruptRegistry(f"{source}: registry schema {header.schema_version} is newer than this onnxgate "
                              f"understands ({REGISTRY_SCHEMA_VERSION}); upgrade onnxgate")
    data = RegistryData(schema_version=header.schema_version, revision=header.revision)
    _parse_section(payload.get("models", {}), "models", VersionRecord, check_version, data.models, data.invalid, source)
    _parse_section(payload.get("deployments", {}), "deployments", Deployment, _check_environment, data.deployments,
                   data.invalid, source)
    _parse_snapshots(payload.get("snapshots", {}), data, source)
    return data


def _parse_snapshots(table: object, data: RegistryData, source: str) -> None:
    if not isinstance(table, dict):
        raise CorruptRegistry(f"{source}: registry is invalid at snapshots: expected an object; it was left untouched")
    for snapshot_id, raw in table.items():
        try:
            data.snapshots[snapshot_id] = SnapshotRecord.model_validate(raw)
        except ValidationError as exc:
            data.invalid.append(InvalidRegistryEntry("snapshots", snapshot_id, None, raw,
                                                     f"at {_where(exc)}: {_first(exc)}"))


def _parse_section(table: object, section: Literal["models", "deployments"], record: type[BaseModel],
                   check_key: Any, into: dict, invalid: list[InvalidRegistryEntry], source: str) -> None:
    if not isinstance(table, dict):
        raise CorruptRegistry(f"{source}: registry is invalid at {section}: expected an object; it was left untouched")
    for name, entries in table.items():
        try:
            check_name(name)
        except InvalidName as exc:
            invalid.append(InvalidRegistryEntry(section, name, None, entries, str(exc)))
            continue
        if not isinstance(entries, dict):
            invalid.append(InvalidRegistryEntry(section, name, None, entries, "expected an object"))
            continue
        parsed = into.setdefault(name, {})
        for key, value in entries.items():
            try:
                check_key(key)
                parsed[key] = record.model_validate(value)
            except InvalidName as exc:
                invalid.append(InvalidRegistryEntry(section, name, key, value, str(exc)))
            except ValidationError as exc:
                invalid.append(InvalidRegistryEntry(section, name, key, value, f"at {_where(exc)}: {_first(exc)}"))


def _check_environment(environment: str) -> str:
    if not environment or environment.strip() != environment:
        raise InvalidName(f"invalid environment name {environment!r}")
    return environment


def _where(exc: ValidationError) -> str:
    return ".".join(str(p) for p in exc.errors()[0]["loc"]) or "(root)"


def _first(exc: ValidationError) -> str:
    return exc.errors()[0]["msg"]


def registry_json(data: RegistryData) -> dict:
    """The JSON form: valid entries as validated, set-aside entries verbatim where nothing has replaced them."""
    payload = _without_empty_governance(data.model_dump(mode="json", exclude_none=True))
    for entry in data.invalid:
        table = payload.setdefault(entry.section, {})
        raw = _without_non_finite(entry.raw)
        if entry.key is None:
            table.setdefault(entry.name, raw)
        elif isinstance(table.setdefault(entry.name, {}), dict):
            table[entry.name].setdefault(entry.key, raw)
    return payload


GOVERNANCE_DEFAULTS = {"signature_verified": False, "approvals": {}, "deployed_to": []}
"""Version fields left out of the file while they hold their default, so that a registry without governance reads
as it did before it existed (and the Node loader and older tools see the same file)."""


def _without_empty_governance(payload: dict) -> dict:
    for versions in payload.get("models", {}).values():
        for record in versions.values():
            for key, default in GOVERNANCE_DEFAULTS.items():
                if key in record and record[key] == default:
                    del record[key]
    if not payload.get("snapshots"):
        payload.pop("snapshots", None)
    return payload


def _without_non_finite(raw: Any) -> Any:
    """A set-aside entry as written back: a NaN or Infinity (which Python's json reads, but is not JSON, and makes the
    Node loader refuse the whole file) becomes the string "NaN"/"Infinity"; the entry stays set aside."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return json.dumps(raw)
    if isinstance(raw, dict):
        return {key: _without_non_finite(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_without_non_finite(value) for value in raw]
    return raw


def registry_bytes(data: RegistryData) -> bytes:
    return (json.dumps(registry_json(data), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


# -- The audit chain's head (modelstore.audit) -----------------------------------------------------------------------
# registry.json records where the audit log ended when it was written, under `audit_head`, beside the state and not in
# it: operations never see it, replay does not rebuild it, and readers (the gateway, the Node loader) ignore it. Only
# the file registry writes it and `onnxgate audit verify` reads it.

AUDIT_HEAD_FIELD = "audit_head"


def registry_bytes_with_head(data: RegistryData, audit_head: dict) -> bytes:
    return (json.dumps({**registry_json(data), AUDIT_HEAD_FIELD: audit_head}, indent=2, sort_keys=True,
                        allow_nan=False) + "\n").encode()


def state_sha256(payload: dict) -> str:
    """The digest of a registry's state, its head left out: of the canonical JSON (sorted keys, no spaces), which a
    written file parses back to exactly, so what was signed at a commit is recomputed from the file."""
    state = {key: value for key, value in payload.items() if key != AUDIT_HEAD_FIELD}
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
