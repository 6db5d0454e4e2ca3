"""One job per model at a time: an exclusive, non-blocking fcntl.flock on <store>/.retrain/locks/<model>.lock, held
for the whole job. Like the file store itself it works across the processes of one host (and local file systems);
watchers on several hosts need a lock in a shared backend instead."""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from retrain.errors import JobBusy


@contextlib.contextmanager
def model_lock(path: Path) -> Iterator[None]:
    """Raises JobBusy at once when another process holds it; the kernel releases it if this process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusy(f"a retraining job of {path.stem} is running (lock {path} is held)") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
