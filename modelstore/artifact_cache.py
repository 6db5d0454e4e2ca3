"""A local cache of an object store's files, named by sha256: each entry is written atomically beside the ETag of the
object it was read from, and verified against its name before use. A gateway that restarts, or loads a version again,
reads only the object's head when the object is unchanged."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from modelstore.fileio import NEW_FILE_MODE, atomic_write, current_umask, sha256_bytes

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

    def fill(self, sha256: str, etag: str, chunks: Iterable[bytes]) -> tuple[bytes, str]:
        """(the bytes, their sha256), written to a temp file as they arrive (the disk works while the network does)
        and kept under `sha256` only if that is what they hash to; otherwise nothing is kept."""
        path = self.path(sha256)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{sha256}.", suffix=".tmp")
        try:
            digest, parts = hashlib.sha256(), []
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), NEW_FILE_MODE & ~current_umask())
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
                    parts.append(chunk)
            actual = digest.hexdigest()
            if actual == sha256:
                os.replace(tmp_name, path)
                atomic_write(path.with_name(path.name + ETAG_SUFFIX), etag.encode(), durable=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        return b"".join(parts), actual

    def discard(self, sha256: str) -> None:
        path = self.path(sha256)
        for stale in (path, path.with_name(path.name + ETAG_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
