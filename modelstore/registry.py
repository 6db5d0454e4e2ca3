"""registry.json: every registered version and what each environment serves.

Readers take no lock: writes are atomic renames, so a read sees a whole file. Writers take an exclusive lock on
registry.json.lock around read-modify-write, so two processes never lose each other's update.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelstore.errors import CorruptRegistry
from modelstore.fileio import atomic_write, exclusive_lock

REGISTRY_SCHEMA_VERSION = 1

VersionStatus = Literal["registered", "deployed", "deprecated", "rolled_back", "archived"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionRecord(_Model):
    registered_at: str
    status: VersionStatus = "registered"
    metrics: dict[str, float] = Field(default_factory=dict)
    sha256: str | None = None
    training_samples: int | None = None


class SloPolicy(_Model):
    """When a canary (or a freshly promoted version in its bake period) is judged to be failing.

    Every field may be overridden per deployment; unset fields take the gateway's defaults.
    """

    latency_quantile: float | None = None
    max_latency_ms: float | None = None
    max_latency_ratio: float | None = None
    max_error_rate: float | None = None
    window_s: float | None = None
    min_requests: int | None = None
    breaches_to_rollback: int | None = None
    bake_s: float | None = None


class CanaryState(_Model):
    version: str
    weight: float = Field(ge=0, le=100, description="percent of traffic")
    steps: list[float] = Field(default_factory=list, description="weights to climb to, in order; 100 promotes")
    interval_s: float | None = None
    started_at: str
    step_started_at: str


class ShadowState(_Model):
    version: str
    weight: float = Field(ge=0, le=100, description="percent of requests mirrored")
    started_at: str


class BakeState(_Model):
    previous_version: str
    until: str


class Deployment(_Model):
    version: str
    deployed_at: str
    status: Literal["active", "rolled_back"] = "active"
    previous_version: str | None = None
    canary: CanaryState | None = None
    shadow: ShadowState | None = None
    bake: BakeState | None = None
    slo: SloPolicy | None = None
    last_rollback: dict | None = None


class RegistryData(_Model):
    schema_version: int = REGISTRY_SCHEMA_VERSION
    models: dict[str, dict[str, VersionRecord]] = Field(default_factory=dict)
    deployments: dict[str, dict[str, Deployment]] = Field(default_factory=dict)

    def deployment(self, name: str, environment: str) -> Deployment | None:
        return self.deployments.get(name, {}).get(environment)

    def environments(self) -> list[str]:
        return sorted({env for envs in self.deployments.values() for env in envs})


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> RegistryData:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return RegistryData()
        return parse_registry(raw, self.path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[RegistryData]:
        """Lock, read, let the caller change the data, write it back atomically. An exception writes nothing."""
        with exclusive_lock(self.lock_path):
            data = self.read()
            yield data
            atomic_write(self.path, registry_bytes(data))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with exclusive_lock(self.lock_path):
            yield


def parse_registry(raw: bytes, path: Path) -> RegistryData:
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRegistry(f"{path}: registry is not valid JSON ({exc}); fix or restore it, it was left untouched") from None
    try:
        return RegistryData.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise CorruptRegistry(f"{path}: registry is invalid at {where}: {first['msg']}; it was left untouched") from None


def registry_bytes(data: RegistryData) -> bytes:
    return (json.dumps(data.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True) + "\n").encode()
