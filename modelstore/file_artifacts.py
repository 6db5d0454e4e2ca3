"""Versions' files in a directory: <root>/<name>/<version>/{model.onnx, metadata.json, ...}. The embedded default
ArtifactStore (modelstore.backends), and the local copy every writer stages a version in (modelstore.writer)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelstore.errors import ArtifactUnreadable, IntegrityError, ModelNotFound, VersionNotFound
from modelstore.fileio import sha256_bytes
from modelstore.metadata import ModelMetadata, read_metadata
from modelstore.versions import check_name, check_version, sort_versions

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
LATEST_LINK = "latest"


def describe_path(root: Path, path: Path, *, relative: bool) -> str:
    """`path` relative to `root` (as a server answering clients should name it), or whole (as a command line should)."""
    if relative:
        try:
            return str(path.relative_to(root))
        except ValueError:
            return path.name
    return str(path)


@dataclass(frozen=True)
class FileArtifacts:
    root: Path
    relative_paths: bool = False

    def describe(self, path: Path) -> str:
        return describe_path(self.root, path, relative=self.relative_paths)

    # -- paths -----------------------------------------------------------------------------------------------------

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / check_version(version)

    # -- ArtifactStore -----------------------------------------------------------------------------------------------

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

    def resolve_version(self, name: str, version: str) -> str:
        """'latest' or a concrete version -> a concrete version that exists."""
        if version == LATEST_LINK:
            versions = self.list_versions(name)
            if not versions:
                raise VersionNotFound(f"model {name!r} has no versions in store {self.describe(self.root)}")
            return versions[-1]
        if not self.version_dir(name, version).is_dir():
            if not self.model_dir(name).is_dir():
                raise ModelNotFound(f"model {name!r} not found in store {self.describe(self.root)}")
            raise VersionNotFound(f"model {name!r} has no version {version!r} in store {self.describe(self.root)}")
        return version

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        version = self.resolve_version(name, version)
        path = self.version_dir(name, version) / METADATA_FILE
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
        for file_name, digest in expected_files(metadata).items():
            check_sha256(self.read_file(name, metadata.version, file_name), digest,
                         self.describe(self.version_dir(name, metadata.version) / file_name))
        return metadata

    def publish_version(self, metadata: ModelMetadata, directory: Path) -> None:
        """Nothing to do: the writer staged the version in this very directory."""
        target = self.version_dir(metadata.name, metadata.version)
        if directory.resolve() != target.resolve():
            raise IntegrityError(f"{self.describe(target)}: a file store publishes only the version directory it holds")


def expected_files(metadata: ModelMetadata) -> dict[str, str]:
    """Every file of a version that metadata.json lists, with its sha256."""
    return {metadata.model_file: metadata.model_sha256, **metadata.files}


def check_sha256(data: bytes, digest: str, where: str) -> bytes:
    """`data` if its sha256 is `digest`; else IntegrityError naming `where`."""
    actual = sha256_bytes(data)
    if actual != digest:
        raise IntegrityError(
            f"{where}: sha256 mismatch (metadata says {digest[:12]}…, file is {actual[:12]}…): refusing a tampered model"
        )
    return data
