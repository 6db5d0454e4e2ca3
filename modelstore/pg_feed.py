"""The PostgreSQL registry's change feed: LISTEN on the channel every commit NOTIFYs (modelstore.pg_registry), with a
slow revision poll while that connection is lost.

One asyncio connection of its own (autocommit: notifications arrive between transactions) listens; between
notifications it checks every `keepalive_s` that the connection still answers, so a database that went away silently
is noticed. Lost, the feed polls the registry's revision every `poll_s` (a lost database reads as a revision no
pool serves, so the gateway tries a reload, keeps its last good pool and reports itself degraded) and tries to listen
again; once listening, it compares the revision with the one served, so a change made while it was away is not missed.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import psycopg
from psycopg import sql

from modelstore.artifact_poll import follow_listing
from modelstore.backends import PolledArtifacts, RegistryBackend, Revision
from modelstore.pg_schema import CHANGE_CHANNEL

log = logging.getLogger("onnxgate.store")


class PgChangeFeed:
    def __init__(self, url: str, registry: RegistryBackend, *, poll_s: float, debounce_ms: int,
                 artifacts: PolledArtifacts | None = None, keepalive_s: float = 5.0, connect_timeout_s: int = 5) -> None:
        """`artifacts`: an object store whose listing is polled too (modelstore.artifact_poll)."""
        self.url = url
        self.registry = registry
        self.artifacts = artifacts
        self.poll_s = poll_s
        self.debounce_s = debounce_ms / 1000
        self.keepalive_s = keepalive_s
        self.connect_timeout_s = connect_timeout_s
        self.listening = False
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()

    def close(self) -> None:
        self._stop.set()
        self._changed.set()

    async def changes(self, served_revision: Callable[[], Revision | None]) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self._follow(served_revision))]
        if self.artifacts is not None:
            tasks.append(asyncio.create_task(follow_listing(self.artifacts, self._stop, self._changed)))
        try:
            while not self._stop.is_set():
                await self._changed.wait()
                await asyncio.sleep(self.debounce_s)  # a burst of commits is one reload
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

    async def _follow(self, served_revision: Callable[[], Revision | None]) -> None:
        while not self._stop.is_set():
            try:
                await self._listen(served_revision)
            except (psycopg.Error, OSError) as exc:
                if self.listening:
                    log.warning("lost the registry's change feed (%s); polling its revision every %g s until it is "
                                "back", str(exc).strip().splitlines()[0] if str(exc).strip() else exc, self.poll_s)
            except Exception:  # a bug here must not end the feed: the gateway would stop following the registry
                log.exception("the registry's change feed failed; polling, and listening again")
            self.listening = False
            await self._check(served_revision)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_s)

    async def _listen(self, served_revision: Callable[[], Revision | None]) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                         connect_timeout=self.connect_timeout_s,
                                                         application_name="onnxgate-feed") as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANGE_CHANNEL)))
            if not self.listening:
                log.info("following the registry's changes by LISTEN %s", CHANGE_CHANNEL)
            self.listening = True
            await self._check(served_revision)  # anything committed before LISTEN took effect
            while not self._stop.is_set():
                async for _ in conn.notifies(timeout=self.keepalive_s):
                    self._changed.set()
                    if self._stop.is_set():
                        return
                await conn.execute("SELECT 1")  # a connection that died quietly raises here

    async def _check(self, served_revision: Callable[[], Revision | None]) -> None:
        if await asyncio.to_thread(self.registry.revision) != served_revision():
            self._changed.set()
