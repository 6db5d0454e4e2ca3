"""The registry as files: registry.json (replaced atomically) and audit.log (appended), under one lock.

A commit takes an exclusive lock on registry.json.lock, checks that registry.json is still the revision the caller
read (its sha256: hand edits count as changes too), appends the audit entries (fsynced), then replaces registry.json.
The audit entry goes first: a crash between the two leaves a logged change that registry.json does not show (its
`revision` is behind the entry's), never a change nobody logged; a write that fails is withdrawn in the log by an
`aborted` entry. Readers take no lock: a rename is atomic.

`flock` holds on one host only; several machines need the database backend.
"""
from __future__ import annotations

from pathlib import Path

from modelstore.audit import ABORTED, AuditLog
from modelstore.backends import Revision, Snapshot
from modelstore.errors import CorruptRegistry, InvalidTransition, RegistryMissing, RevisionConflict
from modelstore.fileio import atomic_write, exclusive_lock, sha256_bytes
from modelstore.registry import RegistryData, parse_registry, registry_bytes

EMPTY = "empty"
MISSING = "missing"



class FileRegistry:
    def __init__(self, path: Path, audit_path: Path, *, display: str | None = None,
                 audit_display: str | None = None) -> None:
        """`display`, `audit_display`: how errors name the two files (default: their paths)."""
        self.path = Path(path)
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
        with exclusive_lock(self.lock_path):
            raw = self._read_bytes(locked=True)
            current = EMPTY if raw is None else sha256_bytes(raw)
            if current != expected:
                raise RevisionConflict(f"{self.display} changed since it was read")
            state.revision += 1
            for entry in entries:
                self._audit.append(**entry, revision=state.revision)
            data = registry_bytes(state)
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

    def restore(self, state: RegistryData) -> None:
        """Write `state` (rebuilt from the audit log, modelstore.replay) as registry.json where it is missing; an
        existing registry is never overwritten this way."""
        with exclusive_lock(self.lock_path):
            if self.path.exists():
                raise InvalidTransition(f"{self.display} exists: restore only replaces a missing registry")
            atomic_write(self.path, registry_bytes(state))

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
