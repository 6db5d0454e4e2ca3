"""The append-only audit log: one JSON object per line, each carrying the sha256 of the line before it.

Editing or deleting any line breaks the chain from the next line on, and `verify` names where. The chain alone cannot
show lines removed from its end, or a log rewritten and re-chained from some line on: every registry commit therefore
records the chain's head (its line count and the sha256 of its last line, `AuditHead`) in registry.json, and `verify`
given that head checks that the log ends exactly there.
"""
from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelstore.errors import AuditChainBroken, CorruptRegistry, SignatureError
from modelstore.fileio import exclusive_lock, sha256_bytes
from modelstore.metadata import utc_now
from modelstore.registry import AUDIT_HEAD_FIELD, RegistryData, registry_json, state_sha256
from modelstore.signing import load_signer, verify_signature

GENESIS = "0" * 64
ABORTED = "aborted"
"""The action of an entry that withdraws the entries of a revision whose registry write failed (modelstore.replay
skips both)."""


AUDIT_KEY_ENV = "ONNXGATE_AUDIT_KEY"
"""The path of the Ed25519 private key (PEM) that signs the audit head at every commit; unset: heads are unsigned."""

SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_TEXT_OR_NULL = (str, type(None))
ENTRY_FIELDS: dict[str, tuple[type, ...]] = {
    "time": (str,), "action": (str,), "actor": _TEXT_OR_NULL, "reason": _TEXT_OR_NULL, "model": _TEXT_OR_NULL,
    "environment": _TEXT_OR_NULL, "before": _TEXT_OR_NULL, "after": _TEXT_OR_NULL, "details": (dict,),
    "prev_sha256": (str,),
}
"""The fields every entry carries, and their JSON types; `revision` (an integer) is optional: older entries lack it."""


@dataclass(frozen=True)
class AuditHead:
    """Where the log ends: `count` lines, the last of which hashes to `sha256` (GENESIS for an empty log)."""

    count: int
    sha256: str

    def to_json(self) -> dict:
        return {"count": self.count, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: object, where: str) -> AuditHead:
        if (not isinstance(value, dict) or type(value.get("count")) is not int or value["count"] < 0
                or not isinstance(value.get("sha256"), str) or not SHA256_HEX.match(value["sha256"])):
            raise AuditChainBroken(f"{where}: audit_head is malformed: expected {{\"count\": a whole number, "
                                   "\"sha256\": 64 hex digits}")
        return cls(value["count"], value["sha256"])


@dataclass(frozen=True)
class AuditStatus:
    """What `verify_anchored` found: `lines` checked; `head` the registry records (None: not anchored yet);
    `registry_found`; `signature_checked` when a public key was given and the head's signature verified."""

    lines: int
    head: AuditHead | None
    registry_found: bool
    signature_checked: bool


def head_message(head: AuditHead, state_digest: str) -> bytes:
    """What an audit head's signature covers: the log's line count and last hash, and the state written with it."""
    fields = {"audit_count": head.count, "audit_sha256": head.sha256, "registry_sha256": state_digest}
    return b"onnxgate audit head v1\n" + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def load_head_signer(key_path: Path | None) -> Callable[[bytes], bytes] | None:
    """The signer of audit heads from the private key at `key_path` (None: heads are unsigned). A key that cannot be
    used refuses the commit before anything is written."""
    if key_path is None:
        return None
    try:
        pem = key_path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read the audit signing key {key_path} (${AUDIT_KEY_ENV}): "
                             f"{exc.strerror}; nothing was written") from None
    try:
        return load_signer(pem)
    except SignatureError as exc:
        raise SignatureError(f"audit signing key {key_path} (${AUDIT_KEY_ENV}): {exc}; nothing was written") from None


def recorded_head(head: AuditHead, state: RegistryData, signer: Callable[[bytes], bytes] | None) -> dict:
    """The `audit_head` a registry records beside `state`: signed, with the state's digest, when there is a signer."""
    recorded = head.to_json()
    if signer is not None:
        recorded["signature"] = signer(head_message(head, state_sha256(registry_json(state)))).decode()
    return recorded


def verify_anchored(raw_registry: bytes | None, log: bytes, registry_display: str, audit_display: str,
                    public_key: bytes | None = None) -> AuditStatus:
    """Check a log (`verify_log`) against the head its registry (`raw_registry`, as one commit left both; None: no
    registry) records; with `public_key`, also the head's signature, which must be there. Raises AuditChainBroken or
    SignatureError."""
    payload = None
    if raw_registry is not None:
        try:
            payload = json.loads(raw_registry)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptRegistry(f"{registry_display}: registry is not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise CorruptRegistry(f"{registry_display}: registry is invalid at (root): expected a JSON object")
    recorded = payload.get(AUDIT_HEAD_FIELD) if payload is not None else None
    head = AuditHead.from_json(recorded, registry_display) if recorded is not None else None
    lines = verify_log(log, audit_display, head)
    if public_key is not None:
        if head is None:
            raise SignatureError(f"{registry_display} records no audit_head, so there is no signature to check")
        signature = recorded.get("signature")
        if not isinstance(signature, str):
            raise SignatureError(f"{registry_display}: audit_head is not signed")
        verify_signature(public_key, head_message(head, state_sha256(payload)), signature.encode(),
                         where=registry_display, what="audit_head's signature")
    return AuditStatus(lines, head, raw_registry is not None, public_key is not None)


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AuditLog:
    def __init__(self, path: Path, display: str | None = None) -> None:
        """`display`: how errors name the file (default: its path)."""
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.display = display or str(self.path)

    def append(self, action: str, **fields: object) -> dict:
        """Append one entry (the fields of `new_entry`)."""
        with exclusive_lock(self.lock_path):
            entry, line = new_entry(_last_line(self.path), action, **fields)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def entries(self) -> list[dict]:
        """Every entry, oldest first; a line that is not a JSON object is reported with its number."""
        return parse_entries(self.read_bytes(), self.display)

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise AuditChainBroken(f"{self.display}: cannot be read ({exc.strerror})") from None

    def head(self) -> AuditHead:
        return head_of(split_lines(self.read_bytes()))

    def stamp(self) -> str:
        """The file's size and modification time: unchanged, it holds no new line."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return ""
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def verify(self, head: AuditHead | None = None) -> int:
        """Return the number of lines checked; raise AuditChainBroken naming the first bad line. `head`: the one the
        registry records, which the log must end at (see `verify_log`)."""
        return verify_log(self.read_bytes(), self.display, head)


def new_entry(previous_line: bytes | None, action: str, *, actor: str | None = None, reason: str | None = None,
              model: str | None = None, environment: str | None = None, before: str | None = None,
              after: str | None = None, details: dict | None = None, revision: int | None = None,
              time: str | None = None, event: str | None = None) -> tuple[dict, bytes]:
    """The entry that follows `previous_line` (None: the first), and its line (newline-terminated) as every backend
    stores it; `revision` is the registry revision the change produced, `time` when it was made, `event` what it means
    in the deployment lifecycle (modelstore.events)."""
    entry = {
        "time": time or utc_now(),
        "action": action,
        **({"event": event} if event is not None else {}),
        "actor": actor or default_actor(),
        "reason": reason,
        "model": model,
        "environment": environment,
        "before": before,
        "after": after,
        "details": details or {},
        **({"revision": revision} if revision is not None else {}),
        "prev_sha256": sha256_bytes(previous_line) if previous_line else GENESIS,
    }
    return entry, json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def parse_entries(raw: bytes, display: str) -> list[dict]:
    """Every entry of a log's bytes, oldest first; a line that is not a JSON object is reported with its number."""
    entries = []
    for number, line in enumerate(split_lines(raw), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise AuditChainBroken(f"{display}: line {number} is not a valid audit entry")
        entries.append(entry)
    return entries


def head_of(lines: list[bytes]) -> AuditHead:
    return AuditHead(len(lines), sha256_bytes(lines[-1]) if lines else GENESIS)


def verify_log(raw: bytes, display: str, head: AuditHead | None = None) -> int:
    """Check that every line is an entry with the expected fields and types, that each links to the one before (the
    first to GENESIS), and, given the registry's `head`, that the log ends there: fewer lines, or a last anchored line
    that hashes otherwise, means lines were removed or the log rewritten. Lines after the head are accepted only when
    an `aborted` entry withdraws them (a registry write that failed after its entry was logged cannot move the head).
    Returns the number of lines; raises AuditChainBroken naming the first bad line, 1-based."""
    lines = split_lines(raw)
    entries = []
    previous = None
    for number, line in enumerate(lines, start=1):
        entry = _entry(line, f"{display}: line {number}")
        expected = GENESIS if previous is None else sha256_bytes(previous)
        if entry["prev_sha256"] != expected:
            linked = "GENESIS (it is the first line)" if previous is None else f"line {number - 1}'s {expected[:12]}…"
            raise AuditChainBroken(f"{display}: line {number}: chain breaks: it records prev_sha256 "
                                   f"{entry['prev_sha256'][:12]}…, expected {linked}")
        entries.append(entry)
        previous = line
    if head is not None:
        _check_head(lines, entries, head, display)
    return len(lines)


def _entry(line: bytes, where: str) -> dict:
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise AuditChainBroken(f"{where}: not a JSON object") from None
    if not isinstance(entry, dict):
        raise AuditChainBroken(f"{where}: not a JSON object")
    for name, types in ENTRY_FIELDS.items():
        if name not in entry:
            raise AuditChainBroken(f"{where}: field {name!r} is missing")
        if not isinstance(entry[name], types):
            raise AuditChainBroken(f"{where}: field {name!r} has the wrong type ({type(entry[name]).__name__})")
    if not SHA256_HEX.match(entry["prev_sha256"]):
        raise AuditChainBroken(f"{where}: prev_sha256 is not a sha256 (64 lowercase hex digits)")
    if "revision" in entry and (type(entry["revision"]) is not int or entry["revision"] < 0):
        raise AuditChainBroken(f"{where}: field 'revision' is not a whole number")
    return entry


def _check_head(lines: list[bytes], entries: list[dict], head: AuditHead, display: str) -> None:
    if len(lines) < head.count:
        raise AuditChainBroken(f"{display}: line {len(lines) + 1}: missing: the registry's audit_head records "
                               f"{head.count} line(s), the log has {len(lines)} (lines were removed from its end)")
    anchored = head_of(lines[:head.count])
    if anchored.sha256 != head.sha256:
        raise AuditChainBroken(f"{display}: line {head.count}: hashes to {anchored.sha256[:12]}…, but the registry's "
                               f"audit_head records {head.sha256[:12]}…: the log was rewritten at or before this line")
    withdrawn = withdrawn_positions(entries)
    for position in range(head.count, len(lines)):
        if position not in withdrawn:
            raise AuditChainBroken(f"{display}: line {position + 1}: not anchored: the registry's audit_head ends at "
                                   f"line {head.count}, and no 'aborted' entry withdraws this one (a crash between "
                                   "the log and the registry write, or a line added by hand)")


def crashed_revision(raw: bytes, head: AuditHead, registry_revision: int, display: str) -> int | None:
    """The revision of a commit that crashed between its audit entries and its registry write: the lines after the
    registry's `head` that no `aborted` entry withdraws, when they are all entries of the revision that registry.json
    would have had next. None when there are no such lines. Any other line there was not written by a commit (added
    by hand): AuditChainBroken naming it, so that no commit anchors it under a head."""
    lines = split_lines(raw)
    tail = [_entry(line, f"{display}: line {number}") for number, line in enumerate(lines[head.count:],
                                                                                     start=head.count + 1)]
    withdrawn = withdrawn_positions(tail)
    crashed = registry_revision + 1
    for position, entry in enumerate(tail):
        if position not in withdrawn and entry.get("revision") != crashed:
            raise AuditChainBroken(f"{display}: line {head.count + position + 1}: not anchored, and not the entry of "
                                   "a commit that crashed: no change is recorded over it (run `onnxgate audit verify`)")
    return crashed if len(withdrawn) < len(tail) else None


def withdrawn_positions(entries: list[dict]) -> set[int]:
    """Positions of `aborted` entries and of the entries of the revision each withdraws (those just before it)."""
    withdrawn: set[int] = set()
    for position, entry in enumerate(entries):
        if entry["action"] == ABORTED:
            withdrawn.add(position)
            revision = (entry.get("details") or {}).get("revision")
            earlier = position - 1
            while earlier >= 0 and entries[earlier].get("revision") == revision and earlier not in withdrawn:
                withdrawn.add(earlier)
                earlier -= 1
    return withdrawn


def split_lines(raw: bytes) -> list[bytes]:
    return [line for line in raw.split(b"\n") if line.strip()]


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line, read backwards from the end so a long log costs no more than a short one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            block = 4096
            data = b""
            position = end
            while position > 0:
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                stripped = data.rstrip(b"\n")
                if b"\n" in stripped:
                    return stripped.rsplit(b"\n", 1)[1]
            stripped = data.rstrip(b"\n")
            return stripped or None
    except FileNotFoundError:
        return None
