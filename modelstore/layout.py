"""Where things live in a store: ml/models/<name>/<version>/{model.onnx, metadata.json}, the `latest` link,
registry.json and audit.log at the root."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelstore.errors import IntegrityError, ModelNotFound, VersionNotFound
from modelstore.fileio import fsync_dir, sha256_file
from modelstore.metadata import ModelMetadata, read_metadata
from modelstore.versions import check_name, check_version, sort_versions

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
LATEST_LINK = "latest"
REGISTRY_FILE = "registry.json"
AUDIT_FILE = "audit.log"
DEFAULT_ROOT = Path("ml/models")


def resolve_store_root(cli_value: str | os.PathLike | None = None) -> Path:
    """--store, else $ONNXGATE_STORE, else $MODELS_DIR (the seed's name), else ml/models under the working dir."""
    for candidate in (cli_value, os.environ.get("ONNXGATE_STORE"), os.environ.get("MODELS_DIR")):
        if candidate:
            return Path(candidate)
    return DEFAULT_ROOT


@dataclass(frozen=True)
class Store:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def audit_path(self) -> Path:
        return self.root / AUDIT_FILE

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / check_version(version)

    def model_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / MODEL_FILE

    def metadata_path(self, name: str, version: str) -> Path:
        return self.version_dir(name, version) / METADATA_FILE

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def list_versions(self, name: str) -> list[str]:
        model_dir = self.model_dir(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"model {name!r} not found in store {self.root}")
        names = [p.name for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink()]
        return sort_versions([n for n in names if (model_dir / n / METADATA_FILE).is_file()])

    def latest_version(self, name: str) -> str:
        versions = self.list_versions(name)
        if not versions:
            raise VersionNotFound(f"model {name!r} has no versions in store {self.root}")
        return versions[-1]

    def resolve_version(self, name: str, version: str) -> str:
        """'latest' or a concrete version -> a concrete version that exists."""
        if version == LATEST_LINK:
            return self.latest_version(name)
        if not self.version_dir(name, version).is_dir():
            if not self.model_dir(name).is_dir():
                raise ModelNotFound(f"model {name!r} not found in store {self.root}")
            raise VersionNotFound(f"model {name!r} has no version {version!r} in store {self.root}")
        return version

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        version = self.resolve_version(name, version)
        return read_metadata(self.metadata_path(name, version))

    def verify_version(self, name: str, version: str) -> ModelMetadata:
        """Check model.onnx and every listed file against the sha256 in metadata.json; return the metadata."""
        metadata = self.read_metadata(name, version)
        directory = self.version_dir(name, metadata.version)
        expected = {metadata.model_file: metadata.model_sha256, **metadata.files}
        for file_name, digest in expected.items():
            path = directory / file_name
            if not path.is_file():
                raise IntegrityError(f"{path}: file listed in metadata.json is missing")
            actual = sha256_file(path)
            if actual != digest:
                raise IntegrityError(
                    f"{path}: sha256 mismatch (metadata says {digest[:12]}…, file is {actual[:12]}…): refusing a tampered model"
                )
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
