"""Noticing a changed object store without a registry change: its listing (names and ETags) compared every
`artifacts.poll_s`. Both change feeds (modelstore.file_feed, modelstore.pg_feed) run it beside their own signal, so a
version's files replaced or tampered with in the bucket wake the gateway as a registry change does."""
from __future__ import annotations

import asyncio
import contextlib

from modelstore.backends import PolledArtifacts


async def follow_listing(artifacts: PolledArtifacts, stop: asyncio.Event, changed: asyncio.Event) -> None:
    """Set `changed` whenever the listing differs from the one seen before, until `stop` is set."""
    seen = await asyncio.to_thread(artifacts.listing_stamp)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=artifacts.poll_s)
        stamp = await asyncio.to_thread(artifacts.listing_stamp)
        if stamp != seen:
            seen = stamp
            changed.set()
