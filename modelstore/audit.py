"""The append-only audit log: one JSON object per line, each carrying the sha256 of the line before it.

Editing or deleting any line breaks the chain from the next line on, and `verify` names where.
"""
from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from modelstore.errors import AuditChainBroken
from modelstore.fileio import exclusive_lock, sha256_bytes
from modelstore.metadata import utc_now

GENESIS = "0" * 64
ABORTED = "aborted"
"""The action of an entry that withdraws the entries of a revision whose registry write failed (modelstore.replay
skips both)."""


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

    def append(self, action: str, *, actor: str | None = None, reason: str | None = None, model: str | None = None,
               environment: str | None = None, before: str | None = None, after: str | None = None,
               details: dict | None = None, revision: int | None = None, time: str | None = None) -> dict:
        """Append one entry; `revision` is the registry revision the change produced, `time` when it was made."""
        with exclusive_lock(self.lock_path):
            last = _last_line(self.path)
            entry = {
                "time": time or utc_now(),
                "action": action,
                "actor": actor or default_actor(),
                "reason": reason,
                "model": model,
                "environment": environment,
                "before": before,
                "after": after,
                "details": details or {},
                **({"revision": revision} if revision is not None else {}),
                "prev_sha256": sha256_bytes(last) if last else GENESIS,
            }
            line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def entries(self) -> list[dict]:
        """Every entry, oldest first; a line that is not a JSON object is reported with its number."""
        entries = []
        for number, line in enumerate(self._lines(), start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                raise AuditChainBroken(f"{self.display}: line {number} is not a valid audit entry")
            entries.append(entry)
        return entries

    def _lines(self) -> list[bytes]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditChainBroken(f"{self.display}: cannot be read ({exc.strerror})") from None
        return [line for line in raw.split(b"\n") if line.strip()]

    def verify(self) -> int:
        """Return the number of lines checked; raise AuditChainBroken naming the first line that breaks the chain."""
        previous = None
        lines = self._lines()
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                claimed = entry["prev_sha256"]
            except (ValueError, KeyError, TypeError):
                raise AuditChainBroken(f"{self.display}: line {number} is not a valid audit entry") from None
            expected = GENESIS if previous is None else sha256_bytes(previous)
            if claimed != expected:
                raise AuditChainBroken(
                    f"{self.display}: chain breaks at line {number}: it records prev_sha256 {claimed[:12]}…, "
                    f"but line {number - 1 if number > 1 else 0} hashes to {expected[:12]}…"
                )
            previous = line
        return len(lines)


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
