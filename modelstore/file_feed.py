"""The file store's change feed: watchfiles on the store root, plus a cheap poll of the registry's revision (for file
systems where change events do not arrive, and for a change that landed before watching began)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from modelstore.artifact_poll import follow_listing
from modelstore.backends import PolledArtifacts, RegistryBackend, Revision
from modelstore.layout import CACHE_DIR, EVENTS_DIR, MONITORING_DIR, RETRAIN_DIR

log = logging.getLogger("onnxgate.store")
PRIVATE_DIRS = (MONITORING_DIR, RETRAIN_DIR, EVENTS_DIR, CACHE_DIR)


class StoreFilter(DefaultFilter):
    """Changes that can alter what is served: not lock files, the audit log, writers' temp files, or the gateway's own
    monitoring files (captured requests, labels: MONITORING_DIR), which it appends to all the time, nor retraining
    jobs' files (RETRAIN_DIR: a job's new version arrives through the registry like any other), nor the event
    sender's cursors (EVENTS_DIR), nor the cache of an object store's files (CACHE_DIR), which loading writes."""

    ignored_suffixes = (".lock", ".tmp", ".log")

    def __call__(self, change: Change, path: str) -> bool:
        name = Path(path).name
        if (name.endswith(self.ignored_suffixes) or "/.tmp-" in path or "/.old-" in path
                or any(f"/{private}/" in path or path.endswith(f"/{private}") for private in PRIVATE_DIRS)):
            return False
        return super().__call__(change, path)


class FileChangeFeed:
    """`artifacts`: an object store (modelstore.s3_artifacts) whose listing is polled every `artifacts.poll_s`: a
    version's files changed in the bucket (replaced, tampered with) wake the gateway as a registry change does."""

    def __init__(self, root: Path, registry: RegistryBackend, *, poll_s: float, debounce_ms: int,
                 artifacts: PolledArtifacts | None = None) -> None:
        self.root = root
        self.registry = registry
        self.artifacts = artifacts
        self.poll_s = poll_s
        self.debounce_ms = debounce_ms
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    def close(self) -> None:
        self._stop.set()
        self._changed.set()

    async def changes(self, served_revision: Callable[[], Revision | None]) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._poll(served_revision))]
        if self.artifacts is not None:
            tasks.append(asyncio.create_task(follow_listing(self.artifacts, self._stop, self._changed)))
        try:
            while not self._stop.is_set():
                await self._changed.wait()
                self._changed.clear()
                if self._stop.is_set():
                    break
                yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _watch(self) -> None:
        while not self.root.is_dir() and not self._stop.is_set():
            await asyncio.sleep(self.poll_s)
        try:
            async for _ in awatch(self.root, watch_filter=StoreFilter(), debounce=self.debounce_ms,
                                  step=self.debounce_ms, stop_event=self._stop, recursive=True):
                self._changed.set()
        except (OSError, RuntimeError) as exc:
            log.warning("watching %s failed (%s); relying on polling the registry", self.root, exc)

    async def _poll(self, served_revision: Callable[[], Revision | None]) -> None:
        """Compare with the revision being served, not one seen earlier: a change landing between a worker's first
        load and this feed's start would otherwise be missed."""
        while not self._stop.is_set():
            if await asyncio.to_thread(self.registry.revision) != served_revision():
                self._changed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)
