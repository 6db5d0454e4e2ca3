"""The registry as files: registry.json (replaced atomically) and audit.log (appended), under one lock.

A commit takes an exclusive lock on registry.json.lock, checks that registry.json is still the revision the caller
read (its sha256: hand edits count as changes too), appends the audit entries (fsynced), then replaces registry.json.
The audit entry goes first: a crash between the two leaves a logged change that registry.json does not show (its
`revision` is behind the entry's), never a change nobody logged; a write that fails is withdrawn in the log by an
`aborted` entry, and so are the entries of a commit that crashed before its registry write, by the next commit. Readers
take no lock: a rename is atomic.

registry.json also records the audit chain's head as it stands after the commit's entries (`audit_head`: line count and
sha256 of the last line), so `verify_audit` detects a log cut short or rewritten. An aborted write cannot move the head:
the lines after it are then the withdrawn entry and its `aborted` line, which verification accepts, and the next commit
anchors them. With a signing key (ONNXGATE_AUDIT_KEY, a PEM Ed25519 private key from `onnxgate keygen`), the head is
signed, together with the digest of the state written beside it (`head_message`).

`flock` holds on one host only; several machines need the database backend.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from modelstore.audit import (
    ABORTED,
    AUDIT_KEY_ENV,
    AuditHead,
    AuditLog,
    AuditStatus,
    crashed_revision,
    load_head_signer,
    recorded_head,
    split_lines,
    verify_anchored,
)
from modelstore.backends import Revision, Snapshot
from modelstore.errors import (
    AuditChainBroken,
    CorruptRegistry,
    InvalidTransition,
    RegistryMissing,
    RevisionConflict,
    TargetNotEmpty,
)
from modelstore.fileio import atomic_write, exclusive_lock, sha256_bytes
from modelstore.registry import (
    AUDIT_HEAD_FIELD,
    RegistryData,
    parse_registry,
    registry_bytes_with_head,
)

EMPTY = "empty"
MISSING = "missing"


class FileRegistry:
    def __init__(self, path: Path, audit_path: Path, *, display: str | None = None,
                 audit_display: str | None = None, audit_key: Path | None = None) -> None:
        """`display`, `audit_display`: how errors name the two files (default: their paths). `audit_key`: the private
        key that signs the audit head (default: $ONNXGATE_AUDIT_KEY, else none)."""
        self.path = Path(path)
        env_key = os.environ.get(AUDIT_KEY_ENV)
        self.audit_key = Path(audit_key) if audit_key else Path(env_key) if env_key else None
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.display = display or str(self.path)
        self._audit = AuditLog(audit_path, audit_display)

    @property
    def audit(self) -> AuditLog:
        return self._audit

    def read(self) -> Snapshot:
        raw = self._read_bytes()
        if raw is None:
            return Snapshot(RegistryData(), EMPTY)
        return Snapshot(parse_registry(raw, self.display), sha256_bytes(raw))

    def revision(self) -> Revision:
        try:
            raw = self._read_bytes()
        except CorruptRegistry:  # missing or unreadable: `read` says which
            return MISSING
        return EMPTY if raw is None else sha256_bytes(raw)

    def commit(self, expected: Revision, state: RegistryData, entries: list[dict]) -> Revision:
        signer = self._signer()  # a key that cannot be used refuses the commit before anything is written
        with exclusive_lock(self.lock_path):
            raw = self._read_bytes(locked=True)
            current = EMPTY if raw is None else sha256_bytes(raw)
            if current != expected:
                raise RevisionConflict(f"{self.display} changed since it was read")
            self._withdraw_crashed_commit(raw)
            state.revision += 1
            for entry in entries:
                self._audit.append(**entry, revision=state.revision)
            data = self._registry_bytes(state, signer)
            try:
                atomic_write(self.path, data)
            except OSError as exc:  # a full disk, say: the log must not keep a change that was not made
                self._audit.append(ABORTED, actor=entries[-1].get("actor") if entries else None,
                                   reason=f"{self.display} could not be written: {exc.strerror or exc}",
                                   details={"revision": state.revision}, revision=state.revision - 1)
                state.revision -= 1
                raise CorruptRegistry(f"{self.display} could not be written ({exc.strerror or exc}); nothing changed, "
                                      "and the audit log records the attempt as aborted") from None
            return sha256_bytes(data)

    def _withdraw_crashed_commit(self, raw: bytes | None) -> None:
        """A commit that crashed after logging its entries and before writing registry.json left entries the registry
        does not show (and whose revision this commit is about to reuse): withdraw them with an `aborted` entry
        first, so that replay skips them and the head this commit writes anchors a log that says what happened. Lines
        no commit wrote refuse the commit (AuditChainBroken) rather than be anchored."""
        if raw is None:
            return
        try:
            payload = json.loads(raw)
            head = AuditHead.from_json(payload[AUDIT_HEAD_FIELD], self.display)
            registry_revision = payload["revision"]
        except (ValueError, UnicodeDecodeError, TypeError, KeyError, AuditChainBroken):
            return  # no usable head (a registry from before heads): nothing to compare the log with
        if type(registry_revision) is not int:
            return
        crashed = crashed_revision(self._audit.read_bytes(), head, registry_revision, self._audit.display)
        if crashed is not None:
            self._audit.append(ABORTED, actor="onnxgate", reason=f"{self.display} never showed revision {crashed}: "
                               "the commit that logged it stopped before writing the registry (a crash)",
                               details={"revision": crashed}, revision=registry_revision)

    def restore(self, state: RegistryData) -> None:
        """Write `state` (rebuilt from the audit log, modelstore.replay) as registry.json where it is missing; an
        existing registry is never overwritten this way."""
        signer = self._signer()
        with exclusive_lock(self.lock_path):
            if self.path.exists():
                raise InvalidTransition(f"{self.display} exists: restore only replaces a missing registry")
            atomic_write(self.path, self._registry_bytes(state, signer))

    def verify_audit(self, public_key: bytes | None = None) -> AuditStatus:
        """Check the audit log (modelstore.audit.verify_log) against the head registry.json records; with
        `public_key`, also the head's signature, which must be there. Raises AuditChainBroken or SignatureError."""
        raw, log = self._read_registry_and_log()
        return verify_anchored(raw, log, self.display, self._audit.display, public_key)

    def export_raw(self) -> tuple[bytes | None, bytes]:
        """registry.json's bytes (None when there is none) and audit.log's, as one commit left them."""
        return self._read_registry_and_log()

    def import_raw(self, document: bytes, log: bytes) -> None:
        """Write a registry and its audit log copied verbatim from another store (modelstore.migrate) into this empty
        one: the log first, as a commit does. TargetNotEmpty if either file is there."""
        with exclusive_lock(self.lock_path):
            if self.path.exists() or self._audit.path.exists():
                raise TargetNotEmpty(f"{self.display}: the target already holds a registry or an audit log")
            atomic_write(self._audit.path, b"".join(line + b"\n" for line in split_lines(log)))
            atomic_write(self.path, document)

    def _read_registry_and_log(self) -> tuple[bytes | None, bytes]:
        """Both files as one commit left them: under the lock, so no commit is half seen. A reader who may not take
        the lock (a read-only auditor) reads without it."""
        try:
            with exclusive_lock(self.lock_path):
                return self._raw_or_none(), self._audit.read_bytes()
        except PermissionError:
            return self._raw_or_none(), self._audit.read_bytes()

    def _raw_or_none(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptRegistry(f"{self.display} cannot be read ({exc.strerror})") from None

    def _signer(self) -> Callable[[bytes], bytes] | None:
        return load_head_signer(self.audit_key)

    def _registry_bytes(self, state: RegistryData, signer: Callable[[bytes], bytes] | None) -> bytes:
        """The state with the head of the log as it stands now (the caller holds the lock, its entries appended)."""
        return registry_bytes_with_head(state, recorded_head(self._audit.head(), state, signer))

    def _read_bytes(self, *, locked: bool = False) -> bytes | None:
        """registry.json's bytes; None for a store that never had one. A store whose audit log records changes had
        one: its registry.json missing is an error, so nobody serves or writes an empty registry over it.
        `locked`: the caller holds the lock (a commit), so no first commit can be half done."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            if not self._audit.path.exists():
                return None
        except OSError as exc:
            raise CorruptRegistry(f"{self.display} cannot be read ({exc.strerror})") from None
        if not locked:
            with exclusive_lock(self.lock_path):  # the first commit writes the audit log first: let it finish
                if self.path.exists():
                    return self.path.read_bytes()
        raise RegistryMissing(f"{self.display} is missing, but {self._audit.display} records changes to it: "
                              "rebuild it with `onnxgate audit replay --restore`, or restore it from a backup")
