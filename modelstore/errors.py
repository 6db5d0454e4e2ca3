"""Every error the store raises. No HTTP here: the gateway and the CLI map these in one place each."""
from __future__ import annotations


class StoreError(Exception):
    """Base class: a problem with the store, a package or the registry, described in one line."""


class InvalidName(StoreError):
    """A model name or version that does not follow the naming rules."""


class ModelNotFound(StoreError):
    """No model of that name in the store."""


class VersionNotFound(StoreError):
    """The model exists but not in that version."""


class NotFound(StoreError):
    """A named record other than a model or version does not exist: a retraining job, a model retrain.toml does not
    configure."""


class Unavailable(StoreError):
    """A feature this installation cannot provide (an optional extra not installed)."""


class DuplicateVersion(StoreError):
    """The version already exists and --force was not given."""


class NotDeployed(StoreError):
    """The model is known but nothing is deployed to the environment."""


class CorruptRegistry(StoreError):
    """registry.json exists but cannot be parsed or validated."""


class InvalidMetadata(StoreError):
    """metadata.json is missing, unparsable or fails validation."""


class IntegrityError(StoreError):
    """A file's sha256 or size disagrees with what metadata or the manifest records."""


class UnsafePackage(StoreError):
    """A package archive with path traversal, links, or entries outside its version directory."""


class SignatureError(StoreError):
    """A package signature is missing, malformed, or does not verify."""


class AuditChainBroken(StoreError):
    """The audit log's hash chain does not hold from some line on."""


class InvalidTransition(StoreError):
    """A registry change that the current state does not allow (e.g. promote with no canary)."""


class SnapshotNotFound(InvalidTransition):
    """A restore of a snapshot id the registry does not hold."""


class RegistryMissing(CorruptRegistry):
    """registry.json is gone from a store that had one (its audit log records changes): a store error, never read as
    an empty store, so a gateway keeps what it serves and no write starts a registry over."""


class InvalidEntry(StoreError):
    """One registry entry (a version record or a deployment) fails validation: the rest of the registry is usable."""


class RevisionConflict(StoreError):
    """The registry changed between a read and the commit based on it (compare-and-set failed)."""


class InvalidSloPolicy(StoreError):
    """An SLO value out of range (a quantile outside (0, 1), a negative rate, ...)."""


class ChangeRefused(StoreError):
    """A configured check refused a deployment change (the policy hook of the transition API)."""


class ArtifactUnreadable(StoreError):
    """A version's file exists but cannot be read (permission denied, not a regular file, I/O error)."""


class InvalidPolicy(StoreError):
    """policy.toml cannot be parsed or validated: every gated change is refused until it is fixed."""


class GateRefused(ChangeRefused):
    """The governance gates refused a deployment change; `verdict` holds every check with its value and limit."""

    def __init__(self, message: str, verdict: dict) -> None:
        super().__init__(message)
        self.verdict = verdict


class RegistryUnavailable(StoreError):
    """The registry's database cannot be reached (down, refused, timed out): nothing was read or written."""


class RegistrySchemaTooNew(StoreError):
    """The registry's database was migrated by a newer onnxgate: this one refuses to read or write it."""
class TargetNotEmpty(StoreError):
    """A copy of a store (`onnxgate store migrate`) into a target that already holds other content: nothing written."""


class InvalidLocation(StoreError):
    """A store location that cannot be used: an artifacts URL that is not s3://bucket[/prefix], or an object store
    backend whose library is not installed."""
