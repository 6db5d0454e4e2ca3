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


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def append(self, action: str, *, actor: str | None = None, reason: str | None = None, model: str | None = None,
               environment: str | None = None, before: str | None = None, after: str | None = None,
               details: dict | None = None) -> dict:
        with exclusive_lock(self.lock_path):
            last = _last_line(self.path)
            entry = {
                "time": utc_now(),
                "action": action,
                "actor": actor or default_actor(),
                "reason": reason,
                "model": model,
                "environment": environment,
                "before": before,
                "after": after,
                "details": details or {},
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
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]

    def verify(self) -> int:
        """Return the number of lines checked; raise AuditChainBroken naming the first line that breaks the chain."""
        if not self.path.exists():
            return 0
        previous = None
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                claimed = entry["prev_sha256"]
            except (ValueError, KeyError, TypeError):
                raise AuditChainBroken(f"{self.path}: line {number} is not a valid audit entry") from None
            expected = GENESIS if previous is None else sha256_bytes(previous)
            if claimed != expected:
                raise AuditChainBroken(
                    f"{self.path}: chain breaks at line {number}: it records prev_sha256 {claimed[:12]}…, "
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
