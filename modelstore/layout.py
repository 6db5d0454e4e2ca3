"""The file store: ml/models/<name>/<version>/{model.onnx, metadata.json}, the `latest` link, registry.json and
audit.log at the root. `Store` is the embedded default implementation of modelstore.backends.ModelRepository; its
path helpers are for the code that writes the store (exporters, packages) and for tests, never for the gateway."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelstore.backends import ChangeFeed, Check, RegistryBackend, SharedRegistry
from modelstore.errors import (
    ArtifactUnreadable,
    IntegrityError,
    InvalidPolicy,
    ModelNotFound,
    StoreError,
    VersionNotFound,
)
from modelstore.file_registry import FileRegistry
from modelstore.fileio import fsync_dir, sha256_bytes
from modelstore.gates import enforce_policy
from modelstore.metadata import ModelMetadata, read_metadata
from modelstore.policy import POLICY_FILE, GovernancePolicy, parse_policy
from modelstore.versions import check_name, check_version, sort_versions

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
LATEST_LINK = "latest"
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


def resolve_store_root(cli_value: str | os.PathLike | None = None) -> Path:
    """--store, else $ONNXGATE_STORE, else $MODELS_DIR (the seed's name), else ml/models under the working dir."""
    for candidate in (cli_value, os.environ.get("ONNXGATE_STORE"), os.environ.get("MODELS_DIR")):
        if candidate:
            return Path(candidate)
    return DEFAULT_ROOT


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def describe(self, path: Path) -> str:
        if self.relative_paths:
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                return path.name
        return str(path)

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
        if self.registry_backend is not None:
            return self.registry_backend.change_feed(poll_s=poll_s, debounce_ms=debounce_ms)
        from modelstore.file_feed import FileChangeFeed  # watchfiles: only a server watching the store needs it

        return FileChangeFeed(self.root, self.registry, poll_s=poll_s, debounce_ms=debounce_ms)

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

    # -- paths -----------------------------------------------------------------------------------------------------

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / check_version(version)

    def model_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / MODEL_FILE

    def metadata_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / METADATA_FILE

    # -- artifacts ---------------------------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list_versions(self, name: str) -> list[str]:
        model_dir = self.model_dir(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"model {name!r} not found in store {self.describe(self.root)}")
        names = [p.name for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink()]
        return sort_versions([n for n in names if (model_dir / n / METADATA_FILE).is_file()])

    def latest_version(self, name: str) -> str:
        versions = self.list_versions(name)
        if not versions:
            raise VersionNotFound(f"model {name!r} has no versions in store {self.describe(self.root)}")
        return versions[-1]

    def resolve_version(self, name: str, version: str) -> str:
        """'latest' or a concrete version -> a concrete version that exists."""
        if version == LATEST_LINK:
            return self.latest_version(name)
        if not self.version_dir(name, version).is_dir():
            if not self.model_dir(name).is_dir():
                raise ModelNotFound(f"model {name!r} not found in store {self.describe(self.root)}")
            raise VersionNotFound(f"model {name!r} has no version {version!r} in store {self.describe(self.root)}")
        return version

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        version = self.resolve_version(name, version)
        path = self.metadata_path(name, version)
        return read_metadata(path, self.describe(path))

    def read_file(self, name: str, version: str, file_name: str) -> bytes:
        directory = self.version_dir(name, version)
        path = directory / file_name
        if path.parent != directory:
            raise IntegrityError(f"{self.describe(directory)}: file name {file_name!r} leaves the version directory")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"{self.describe(path)}: file listed in metadata.json is missing") from None
        except OSError as exc:
            raise ArtifactUnreadable(f"{self.describe(path)}: cannot be read ({exc.strerror})") from None

    def version_stamp(self, name: str, version: str) -> str:
        """Name, size, mtime and inode of every file in the version directory: a cheap identity that changes when
        any file does (a tampered model, a restored one), without reading them."""
        try:
            entries = sorted(os.scandir(self.version_dir(name, version)), key=lambda e: e.name)
        except OSError:
            return ""
        stamps = []
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            stamps.append(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_mode:o}")
        return "|".join(stamps)

    def verify_version(self, name: str, version: str) -> ModelMetadata:
        """Check model.onnx and every listed file against the sha256 in metadata.json; return the metadata."""
        metadata = self.read_metadata(name, version)
        expected = {metadata.model_file: metadata.model_sha256, **metadata.files}
        for file_name, digest in expected.items():
            check_sha256(self.read_file(name, metadata.version, file_name), digest,
                         self.describe(self.version_dir(name, metadata.version) / file_name))
        return metadata

    def update_latest(self, name: str) -> str | None:
        """Point <name>/latest at the newest version: a relative link made under a temp name, renamed over the old.

        rename(2) replaces the link atomically, so a reader resolving `latest` always finds one version or the other.
        """
        model_dir = self.model_dir(name)
        versions = self.list_versions(name)
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


def check_sha256(data: bytes, digest: str, where: str) -> bytes:
    """`data` if its sha256 is `digest`; else IntegrityError naming `where`."""
    actual = sha256_bytes(data)
    if actual != digest:
        raise IntegrityError(
            f"{where}: sha256 mismatch (metadata says {digest[:12]}…, file is {actual[:12]}…): refusing a tampered model"
        )
    return data


def open_store(location: str | os.PathLike, *, relative_paths: bool = False, registry_url: str | None = None) -> Store:
    """The store at `location`, its registry in the database `registry_url` names when one is given (else
    registry.json and audit.log under `location`)."""
    backend = open_registry(registry_url) if registry_url else None
    return Store(Path(location), relative_paths=relative_paths, registry_backend=backend)


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
