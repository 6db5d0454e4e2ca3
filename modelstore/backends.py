"""The seam between the store and everything above it: what a registry, an artifact store and a change feed must do.

The file store (modelstore.layout.Store, modelstore.file_registry, modelstore.file_feed) is the first implementation;
a database and an object store go behind the same protocols. Nothing here can only be answered by a local disk:
revisions are opaque tokens, artifacts are named by model, version and file name, and change detection is by
revision (the registry) and by a per-version stamp (the artifacts), never by paths or inodes.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from modelstore.metadata import ModelMetadata
from modelstore.policy import GovernancePolicy
from modelstore.registry import RegistryData

Revision = str
"""An opaque token that changes whenever the registry's content changes (a digest of the file, a database row's
revision number). Compared for equality only."""


class Snapshot(NamedTuple):
    state: RegistryData
    revision: Revision


class AuditTrail(Protocol):
    def entries(self) -> list[dict]:
        """Every entry, oldest first."""

    def verify(self) -> int:
        """Check the hash chain; return the number of entries, or raise AuditChainBroken naming where it breaks."""

    def read_bytes(self) -> bytes:
        """Every line, as audit.log holds them."""

    def stamp(self) -> str:
        """A cheap token that changes whenever a line is added (the file's size and time, the database's revision)."""


class RegistryBackend(Protocol):
    """Where registry state and its audit trail live. Writes are compare-and-set by revision."""

    @property
    def audit(self) -> AuditTrail: ...

    def read(self) -> Snapshot:
        """The current state and its revision. Raises CorruptRegistry (RegistryMissing when the registry is gone from a
        store that had one); an empty store reads as empty."""

    def revision(self) -> Revision:
        """The current revision, cheaply, for change detection; never raises for a broken or missing registry (it
        returns a revision that differs from any good one, and `read` then says what is wrong)."""

    def commit(self, expected: Revision, state: RegistryData, entries: list[dict]) -> Revision:
        """Write `state` (its revision number one above the one read) with its audit `entries`, as one change, iff the
        registry is still at `expected`; else raise RevisionConflict and write nothing. Returns the new revision."""

    def export_raw(self) -> tuple[bytes | None, bytes]:
        """The registry's JSON exactly as registry.json holds it (None when there is none) and the audit log's lines
        exactly as audit.log holds them, as one commit left them: what `onnxgate store migrate` copies."""

    def import_raw(self, document: bytes, log: bytes) -> None:
        """Write what another registry's `export_raw` gave, verbatim (the chain's hashes unchanged), into this empty
        registry; TargetNotEmpty if it holds a registry or any audit line."""


class SharedRegistry(RegistryBackend, Protocol):
    """A registry that does not live under the store's root (a database): it says itself when it changes, and holds
    resources (connections) to release."""

    def change_feed(self, *, poll_s: float, debounce_ms: int, artifacts: PolledArtifacts | None = None) -> ChangeFeed:
        """`artifacts`: an object store whose listing the feed polls too (modelstore.artifact_poll)."""

    def close(self) -> None: ...


class ArtifactStore(Protocol):
    """The versions' files, by model name, version and file name."""

    def list_models(self) -> list[str]: ...

    def list_versions(self, name: str) -> list[str]:
        """The versions whose metadata.json is there (it is written last), oldest first; ModelNotFound if none."""

    def resolve_version(self, name: str, version: str) -> str:
        """'latest' or a concrete version -> a concrete version that exists (ModelNotFound, VersionNotFound)."""

    def read_metadata(self, name: str, version: str) -> ModelMetadata:
        """A version's metadata ('latest' resolves to the newest version)."""

    def read_file(self, name: str, version: str, file_name: str) -> bytes:
        """The bytes of one file of a version, unverified: the caller checks them against metadata's sha256."""

    def version_stamp(self, name: str, version: str) -> str:
        """A token that changes whenever any of the version's files change (sizes and times, object ETags); '' when
        the version does not exist."""

    def verify_version(self, name: str, version: str) -> ModelMetadata:
        """Check every file of the version against metadata's sha256; return the metadata."""

    def publish_version(self, metadata: ModelMetadata, directory: Path) -> None:
        """Make the version a writer staged in `directory` (modelstore.writer) readable here, each file verified and
        metadata.json last, so that the version appears whole; IntegrityError if a copy does not verify."""


@runtime_checkable
class PolledArtifacts(Protocol):
    """An artifact store no file watcher sees (an object store): the change feed compares its listing every poll_s."""

    poll_s: float

    def listing_stamp(self) -> str:
        """A digest of every object's name and ETag; never raises (an unreachable store has a stamp of its own)."""


class ChangeFeed(Protocol):
    def changes(self, served_revision: Callable[[], Revision | None]) -> AsyncIterator[None]:
        """Yield whenever the registry or an artifact may have changed, bursts collapsed into one: at once if the
        registry's revision already differs from `served_revision()` (what the caller serves)."""

    def close(self) -> None:
        """End the iteration."""


class Check(Protocol):
    """A policy run inside the transition API before a change is committed (modelstore.gates): raise ChangeRefused
    to refuse it; return what it verified, one record per version it checked (logged as `gates_passed` entries)."""

    def __call__(self, store: ModelRepository, proposal: object) -> list[dict]: ...


class ModelRepository(ArtifactStore, Protocol):
    """A store as the gateway and the transition API see it: a registry, artifacts, a change feed and the checks
    every deployment change passes."""

    @property
    def registry(self) -> RegistryBackend: ...

    @property
    def checks(self) -> tuple[Check, ...]: ...

    def read_policy(self) -> GovernancePolicy | None:
        """The governance policy (modelstore.policy), None when the store has none; InvalidPolicy when it is broken."""

    def change_feed(self, *, poll_s: float, debounce_ms: int) -> ChangeFeed: ...
