"""Reloading on store changes: the store's change feed says something may have changed, the pool keeper reloads.
Bursts collapse into one reload; a reload that fails unexpectedly does not stop the watching."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from modelstore.backends import ChangeFeed, Revision

log = logging.getLogger("onnxgate.gateway")


class StoreWatcher:
    def __init__(self, feed: ChangeFeed, reload: Callable[[], Awaitable[object]],
                 served_revision: Callable[[], Revision | None]) -> None:
        """`served_revision`: the registry revision the last reload read, so that a change landing before the feed
        started is noticed at once rather than missed."""
        self.feed = feed
        self.reload = reload
        self.served_revision = served_revision

    def stop(self) -> None:
        self.feed.close()

    async def run(self) -> None:
        async for _ in self.feed.changes(self.served_revision):
            try:
                await self.reload()
            except Exception:  # a reload bug must not stop the watcher; the next change retries
                log.exception("reload failed")
