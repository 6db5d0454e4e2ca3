"""The file store: ml/models/<name>/<version>/{model.onnx, metadata.json}, the `latest` link, registry.json and
audit.log at the root. `Store` is the embedded default implementation of modelstore.backends.ModelRepository; its
path helpers are for the code that writes the store (exporters, packages) and for tests, never for the gateway."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelstore.backends import ArtifactStore, ChangeFeed, Check, PolledArtifacts, RegistryBackend, SharedRegistry
from modelstore.errors import InvalidPolicy, StoreError
from modelstore.file_artifacts import LATEST_LINK, METADATA_FILE, MODEL_FILE, FileArtifacts, check_sha256, describe_path
from modelstore.file_registry import FileRegistry
from modelstore.fileio import fsync_dir
from modelstore.gates import enforce_policy
from modelstore.metadata import ModelMetadata
from modelstore.policy import POLICY_FILE, GovernancePolicy, parse_policy

__all__ = ["AUDIT_FILE", "CACHE_DIR", "LATEST_LINK", "METADATA_FILE", "MODEL_FILE", "MONITORING_DIR", "REGISTRY_FILE",
           "RETRAIN_DIR", "Store", "check_sha256", "open_store", "resolve_artifacts_url", "resolve_store_root"]

REGISTRY_FILE = "registry.json"
AUDIT_FILE = "audit.log"
DEFAULT_ROOT = Path("ml/models")
REGISTRY_URL_ENV = "ONNXGATE_REGISTRY_URL"
MONITORING_DIR = ".monitoring"
"""Captured requests and labels (monitoring/capture.py, monitoring/feedback.py), under the store root: a dot name, so
never listed as a model, and ignored by the change feed."""
RETRAIN_DIR = ".retrain"
"""Retraining jobs (records, logs, training outputs) and their per-model lock files (retrain/): ignored like
MONITORING_DIR."""
EVENTS_DIR = ".events"
"""The event sender's cursors (one per subscriber of events.toml) and its lock (webhooks/): ignored like
MONITORING_DIR."""
CACHE_DIR = ".cache"
"""A gateway's verified copies of an object store's files, named by sha256 (modelstore.s3_artifacts): ignored like
MONITORING_DIR."""


def resolve_store_root(cli_value: str | os.PathLike | None = None) -> Path:
    """--store, else $ONNXGATE_STORE, else $MODELS_DIR (the seed's name), else ml/models under the working dir."""
    for candidate in (cli_value, os.environ.get("ONNXGATE_STORE"), os.environ.get("MODELS_DIR")):
        if candidate:
            return Path(candidate)
    return DEFAULT_ROOT


def resolve_artifacts_url(cli_value: str | None = None) -> str | None:
    """--artifacts, else $ONNXGATE_ARTIFACTS_URL, else None: the versions' files live in the store directory."""
    return cli_value or os.environ.get("ONNXGATE_ARTIFACTS_URL") or None


@dataclass(frozen=True)
class Store:
    """`relative_paths`: errors name files relative to the root (`iris/v1.0.0/model.onnx`), as a server answering
    clients should; by default they carry the whole path, as a command line should. `checks`: the policies every
    deployment change must pass (modelstore.transitions); by default the governance gates of policy.toml.
    `registry_backend`: where the registry and its audit log live when not in registry.json and audit.log under the
    root (a database shared by several machines, modelstore.pg_registry); it brings its own change feed. Artifacts,
    policy.toml, .monitoring and .retrain stay under the root either way."""

    root: Path
    relative_paths: bool = False
    checks: tuple[Check, ...] = (enforce_policy,)
    registry_backend: SharedRegistry | None = None
    artifacts: ArtifactStore | None = None
    """Where versions' files are read from (an object store: modelstore.s3_artifacts); None: the directory itself."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def describe(self, path: Path) -> str:
        return describe_path(self.root, path, relative=self.relative_paths)

    # -- the registry and changes ----------------------------------------------------------------------------------

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def audit_path(self) -> Path:
        return self.root / AUDIT_FILE

    @property
    def registry(self) -> RegistryBackend:
        if self.registry_backend is not None:
            return self.registry_backend
        return FileRegistry(self.registry_path, self.audit_path, display=self.describe(self.registry_path),
                            audit_display=self.describe(self.audit_path))

    def change_feed(self, *, poll_s: float, debounce_ms: int) -> ChangeFeed:
        polled = self.artifacts if isinstance(self.artifacts, PolledArtifacts) else None  # not watched: polled
        if self.registry_backend is not None:
            return self.registry_backend.change_feed(poll_s=poll_s, debounce_ms=debounce_ms, artifacts=polled)
        from modelstore.file_feed import FileChangeFeed  # watchfiles: only a server watching the store needs it

        return FileChangeFeed(self.root, self.registry, poll_s=poll_s, debounce_ms=debounce_ms, artifacts=polled)

    def close(self) -> None:
        """Release what the registry backend holds (a database's connections); the file store holds nothing."""
        if self.registry_backend is not None:
            self.registry_backend.close()

    @property
    def policy_path(self) -> Path:
        return self.root / POLICY_FILE

    def read_policy(self) -> GovernancePolicy | None:
        try:
            raw = self.policy_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidPolicy(f"{self.describe(self.policy_path)}: cannot be read ({exc.strerror})") from None
        return parse_policy(raw, self.describe(self.policy_path))

    # -- paths of the local copy (writers stage every version here) ---------------------------------------------

    @property
    def local(self) -> FileArtifacts:
        return FileArtifacts(self.root, self.relative_paths)

    def model_dir(self, name: str) -> Path:
        return self.local.model_dir(name)

    def version_dir(self, name: str, version: str) -> Path:
        return self.local.version_dir(name, version)

    def model_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / MODEL_FILE

    def metadata_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / METADATA_FILE

    # -- artifacts: the injected store (an object store), else the directory -----------------------------------------

    @property
    def artifact_store(self) -> ArtifactStore:
        return self.artifacts if self.artifacts is not None else self.local

    def list_models(self) -> list[str]:
        return self.artifact_store.list_models()

    def list_versions(self, name: str) -> list[str]:
        return self.artifact_store.list_versions(name)

    def latest_version(self, name: str) -> str:
        return self.resolve_version(name, LATEST_LINK)

    def resolve_version(self, name: str, version: str) -> str:
        """'latest' or a concrete version -> a concrete version that exists."""
        return self.artifact_store.resolve_version(name, version)

    def has_version(self, name: str, version: str) -> bool:
        """Whether any file of the version is there (a version being written counts: it is not free to write)."""
        return self.artifact_store.version_stamp(name, version) != ""

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        return self.artifact_store.read_metadata(name, version)

    def read_file(self, name: str, version: str, file_name: str) -> bytes:
        return self.artifact_store.read_file(name, version, file_name)

    def version_stamp(self, name: str, version: str) -> str:
        return self.artifact_store.version_stamp(name, version)

    def verify_version(self, name: str, version: str) -> ModelMetadata:
        """Check model.onnx and every listed file against the sha256 in metadata.json; return the metadata."""
        return self.artifact_store.verify_version(name, version)

    def update_latest(self, name: str) -> str | None:
        """Point <name>/latest at the newest version: a relative link made under a temp name, renamed over the old.

        rename(2) replaces the link atomically, so a reader resolving `latest` always finds one version or the other.
        """
        model_dir = self.model_dir(name)
        versions = self.local.list_versions(name)
        link = model_dir / LATEST_LINK
        if not versions:
            if link.is_symlink():
                link.unlink()
            return None
        newest = versions[-1]
        tmp_link = model_dir / f".{LATEST_LINK}.{uuid.uuid4().hex}"
        os.symlink(newest, tmp_link)
        os.replace(tmp_link, link)
        fsync_dir(model_dir)
        return newest


def open_store(location: str | os.PathLike, *, relative_paths: bool = False, registry_url: str | None = None,
               artifacts_url: str | None = None, artifacts_poll_s: float = 5.0) -> Store:
    """The store at `location`: its registry in the database `registry_url` names when one is given (else
    registry.json and audit.log under `location`), its versions' files in the object store `artifacts_url` names
    (s3://bucket/prefix) when one is given, its listing compared every `artifacts_poll_s` by a change feed."""
    root = Path(location)
    artifacts = None
    if artifacts_url:
        from modelstore.s3_artifacts import open_artifacts  # boto3: only a store with an object store needs it

        artifacts = open_artifacts(artifacts_url, cache_dir=artifacts_cache_dir(root), poll_s=artifacts_poll_s)
    backend = open_registry(registry_url) if registry_url else None
    return Store(root, relative_paths=relative_paths, registry_backend=backend, artifacts=artifacts)


def open_registry(url: str) -> SharedRegistry:
    """The registry backend a URL names: postgresql://... (the postgres extra)."""
    try:
        from modelstore.pg_registry import PgRegistry, is_registry_url
    except ImportError as exc:
        if exc.name not in ("psycopg", "psycopg_pool"):
            raise
        raise StoreError(f"a registry in PostgreSQL needs the postgres extra ({exc.name} is not installed): "
                         "pip install 'onnxgate[postgres]'") from None
    if not is_registry_url(url):
        raise StoreError(f"registry URL {url.split('://')[0]}://...: not supported (use postgresql://...)")
    return PgRegistry(url)


def artifacts_cache_dir(root: Path) -> Path:
    """$ONNXGATE_CACHE_DIR, else .cache/artifacts under the store root."""
    configured = os.environ.get("ONNXGATE_CACHE_DIR")
    return Path(configured) if configured else root / CACHE_DIR / "artifacts"
