"""Watching the store: watchfiles on the store root, plus a cheap periodic stat of registry.json (for file systems
where change events do not arrive). Either one asks for a reload; bursts of changes collapse into one."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, awatch

from gateway.pool import registry_stamp
from modelstore.layout import Store

log = logging.getLogger("onnxgate.gateway")


class StoreFilter(DefaultFilter):
    """Changes that can alter what is served: not lock files, the audit log, or writers' temp files."""

    ignored_suffixes = (".lock", ".tmp", ".log")

    def __call__(self, change: Change, path: str) -> bool:
        name = Path(path).name
        if name.endswith(self.ignored_suffixes) or "/.tmp-" in path or "/.old-" in path:
            return False
        return super().__call__(change, path)


class StoreWatcher:
    def __init__(self, store: Store, reload: Callable[[], Awaitable[object]], *, debounce_ms: int,
                 poll_s: float, loaded_stamp: tuple | None) -> None:
        """`loaded_stamp`: registry.json's stamp when the served pool read it (Pool.registry_stamp). Taking the
        stamp now instead would miss a deploy landing between that read and this watcher's start: the poll would
        see nothing new, and watchfiles was not watching yet."""
        self.store = store
        self.reload = reload
        self.debounce_ms = debounce_ms
        self.poll_s = poll_s
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._seen_stamp = loaded_stamp

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self._poll())]
        try:
            while not self._stop.is_set():
                await self._changed.wait()
                self._changed.clear()
                if self._stop.is_set():
                    break
                self._seen_stamp = registry_stamp(self.store)
                try:
                    await self.reload()
                except Exception:  # a reload bug must not stop the watcher; the next change retries
                    log.exception("reload failed")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def request_reload(self) -> None:
        self._changed.set()

    async def _watch(self) -> None:
        root = self.store.root
        while not root.is_dir() and not self._stop.is_set():
            await asyncio.sleep(self.poll_s)
        try:
            async for _ in awatch(root, watch_filter=StoreFilter(), debounce=self.debounce_ms, step=self.debounce_ms,
                                  stop_event=self._stop, recursive=True):
                self.request_reload()
        except (OSError, RuntimeError) as exc:
            log.warning("watching %s failed (%s); relying on polling registry.json", root, exc)

    async def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)
            if registry_stamp(self.store) != self._seen_stamp:
                self.request_reload()
