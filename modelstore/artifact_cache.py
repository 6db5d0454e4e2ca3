"""A local cache of an object store's files, named by sha256: each entry is written atomically beside the ETag of the
object it was read from, and verified against its name before use. A gateway that restarts, or loads a version again,
reads only the object's head when the object is unchanged."""
from __future__ import annotations

import contextlib
from pathlib import Path

from modelstore.fileio import atomic_write, sha256_bytes

ETAG_SUFFIX = ".etag"


class ArtifactCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.directory / sha256

    def get(self, sha256: str, etag: str) -> bytes | None:
        """The bytes cached for `sha256` if they were read from an object with `etag` and still hash to `sha256`;
        None otherwise (an entry that does not verify is removed)."""
        path = self.path(sha256)
        try:
            if path.with_name(path.name + ETAG_SUFFIX).read_text(encoding="utf-8") != etag:
                return None
            data = path.read_bytes()
        except (OSError, UnicodeDecodeError):
            return None
        if sha256_bytes(data) != sha256:
            self.discard(sha256)
            return None
        return data

    def put(self, sha256: str, etag: str, data: bytes) -> None:
        """Keep verified bytes: the caller has checked that `data` hashes to `sha256`."""
        path = self.path(sha256)
        atomic_write(path, data, durable=False)
        atomic_write(path.with_name(path.name + ETAG_SUFFIX), etag.encode(), durable=False)

    def discard(self, sha256: str) -> None:
        path = self.path(sha256)
        for stale in (path, path.with_name(path.name + ETAG_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
