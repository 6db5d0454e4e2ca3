"""The event sender: reads the audit log, and for each subscriber of events.toml POSTs the entries it wants, in log
order, from its cursor on (webhooks/cursor.py).

A subscriber that fails is retried with doubling waits up to backoff_max_s, and holds back only its own later events
(they stay in order); 5xx, 408, 429, timeouts and refused connections are retried until they succeed, so no event is
lost, and a refusal with another 4xx is recorded in the cursor as skipped after client_error_attempts tries.
Delivery is at-least-once: an event whose answer arrived but whose cursor write did not (the process stopped between
the two) is sent again on resume, with the same X-Onnxgate-Delivery id.

One sender per store at a time: it holds an flock on .events/sender.lock while it runs (a gateway's lifespan, or
`onnxgate events run`); the others wait for it, and take over when its process ends. Subscribers are served one after
another in one thread, so a slow subscriber delays the others by at most its timeout per event.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelstore.audit import ABORTED, split_lines, withdrawn_positions
from modelstore.backends import RegistryBackend
from modelstore.errors import StoreError
from modelstore.events import event_of
from modelstore.fileio import sha256_bytes
from modelstore.layout import Store
from modelstore.metadata import utc_now
from webhooks.config import EventsConfig, SenderSettings, Subscriber, read_events_config
from webhooks.cursor import Cursor, CursorStore, SkippedEvent
from webhooks.delivery import Attempt, post
from webhooks.errors import InvalidEventsConfig, SenderBusy
from webhooks.payload import payload_body, request_headers

log = logging.getLogger("onnxgate.events")
Poster = Callable[[str, bytes, dict[str, str], float], Attempt]


@dataclass(frozen=True)
class LogLine:
    position: int  # 0-based
    raw: bytes

    @property
    def delivery_id(self) -> str:
        return sha256_bytes(self.raw)


class AuditTail:
    """The store's audit log as lines, read through its registry (audit.log, or the database's rows), and which of
    them are settled: withdrawn entries (a commit that failed, and the `aborted` entry saying so) are never events, and
    entries of a revision the registry does not show yet belong to a commit still being written, so they wait."""

    def __init__(self, registry: RegistryBackend) -> None:
        self.registry = registry

    def lines(self) -> list[bytes]:
        return split_lines(self.registry.audit.read_bytes())

    def stamp(self) -> str:
        """Unchanged, the log holds no new entry (modelstore.backends.AuditTrail.stamp)."""
        return self.registry.audit.stamp()

    def committed_revision(self) -> int | None:
        try:
            return self.registry.read().state.revision
        except StoreError:
            return None


def parse_entry(raw: bytes) -> dict | None:
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("action"), str) else None


class EventSender:
    def __init__(self, store_root: Path, *, registry: RegistryBackend | None = None,
                 clock: Callable[[], float] = time.time, poster: Poster = post) -> None:
        """`store_root`: where events.toml and the cursors are. `registry`: the one whose audit log is read (default:
        the file registry under `store_root`; a database when the store keeps its registry there)."""
        self.store = Store(Path(store_root))
        self.cursors = CursorStore(self.store.root)
        self.tail = AuditTail(registry if registry is not None else self.store.registry)
        self.clock = clock
        self.poster = poster
        self._config: EventsConfig | None = None
        self._config_error: str | None = None
        self._idle_at: tuple | None = None

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set: once events.toml names subscribers (a store without it is left untouched),
        wait to be the store's sender, then look at the log every poll_s. A store where .events/ cannot be made (read
        only) stops the sender, logged, never its caller."""
        try:
            self._run(stop)
        except OSError as exc:
            log.error("event sender of %s stopped: %s", self.store.root, exc)

    def _run(self, stop: threading.Event) -> None:
        while self.current_config() is None:
            if stop.wait(SenderSettings().poll_s):
                return
        with self.sender_lock(wait=stop):
            if stop.is_set():
                return
            log.info("event sender of %s started", self.store.root)
            while not stop.is_set():
                config = self.current_config()
                settings = config.sender if config is not None else SenderSettings()
                wait_s = settings.poll_s
                try:
                    next_try = self.deliver(config, stop, once=False) if config is not None else None
                except (OSError, StoreError) as exc:  # a cursor not written, a registry not read: try again
                    log.error("event sender: %s", exc)
                    next_try = None
                if next_try is not None:
                    wait_s = min(wait_s, max(0.0, next_try - self.clock()))
                stop.wait(wait_s)

    def run_once(self) -> dict[str, Cursor]:
        """One pass for `onnxgate events run --once`: every subscriber's pending events, each tried once, in order,
        stopping at the first that fails (its cursor records the failure and the backoff). SenderBusy when another
        sender runs; InvalidEventsConfig when events.toml is broken."""
        config = read_events_config(self.store.root)
        if config is None:
            return {}
        with self.sender_lock(wait=None):
            self.deliver(config, threading.Event(), once=True)
        return {subscriber.name: self.cursors.read(subscriber.name) or Cursor() for subscriber in config.subscribers}

    def current_config(self) -> EventsConfig | None:
        """events.toml as it is now; when it is broken, the last good one (or none), with the error logged once:
        a typo must not stop the gateway, nor resend or drop anything."""
        try:
            config = read_events_config(self.store.root)
        except InvalidEventsConfig as exc:
            if str(exc) != self._config_error:
                log.error("events.toml refused, %s: %s", "keeping the previous subscribers" if self._config
                          else "no events are sent until it is fixed", exc)
                self._config_error = str(exc)
            return self._config
        if self._config_error is not None:
            log.info("events.toml is valid again")
            self._config_error = None
        self._config = config
        return config

    @contextlib.contextmanager
    def sender_lock(self, wait: threading.Event | None) -> Iterator[None]:
        """The store's sender lock: waited for (polling, until `wait` is set) or, with wait None, SenderBusy at once."""
        self.cursors.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.cursors.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if wait is None:
                        raise SenderBusy(f"another process is the event sender of {self.store.root} "
                                         f"(it holds {self.cursors.lock_path})") from None
                    if wait.wait(1.0):
                        yield
                        return
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- delivering ------------------------------------------------------------------------------------------------

    def deliver(self, config: EventsConfig, stop: threading.Event, *, once: bool) -> float | None:
        """Every subscriber's pending events; returns the earliest time a subscriber in backoff may be tried again.
        A pass that left every subscriber at the end of the log is not repeated until the log or events.toml change
        (the log is not read every poll)."""
        idle_key = (self.tail.stamp(), config.model_dump_json())
        if not once and idle_key == self._idle_at:
            return None
        self._idle_at = None
        lines = self.tail.lines()
        committed = self.tail.committed_revision()
        next_tries = []
        for subscriber in config.subscribers:
            if stop.is_set():
                break
            next_try = self.deliver_to(subscriber, config.sender, lines, committed, stop, once)
            if next_try is not None:
                next_tries.append(next_try)
        if not next_tries and not stop.is_set() and all(
                (self.cursors.read(subscriber.name) or Cursor()).position >= len(lines)
                for subscriber in config.subscribers):
            self._idle_at = idle_key
        return min(next_tries, default=None)

    def deliver_to(self, subscriber: Subscriber, settings: SenderSettings, lines: list[bytes], committed: int | None,
                   stop: threading.Event, once: bool) -> float | None:
        cursor = self.cursors.read(subscriber.name)
        if cursor is None:
            cursor = Cursor(position=len(lines) if subscriber.start == "end" else 0)
            self.cursors.write(subscriber.name, cursor)
        if cursor.position > len(lines):
            log.error("events: subscriber %s's cursor is at line %d, but the audit log has %d lines: holding its "
                      "events until the log is back", subscriber.name, cursor.position, len(lines))
            return None
        if not once and cursor.next_try_epoch > self.clock():
            return cursor.next_try_epoch
        entries = [parse_entry(raw) for raw in lines[cursor.position:]]
        withdrawn = withdrawn_positions([entry or {"action": ""} for entry in entries])
        moved = False
        for offset, entry in enumerate(entries):
            if stop.is_set():
                break
            line = LogLine(cursor.position, lines[cursor.position])
            if entry is None or entry["action"] == ABORTED or offset in withdrawn:
                cursor.advance()
                moved = True
                continue
            revision = entry.get("revision")
            if committed is not None and isinstance(revision, int) and revision > committed:
                break  # a commit still being written: its registry write decides whether it happened
            event = event_of(entry)
            if not subscriber.wants(event):
                cursor.advance()
                moved = True
                continue
            if not self.attempt(subscriber, settings, cursor, line, entry, event):
                return None if once else cursor.next_try_epoch
            moved = False
        if moved:
            self.cursors.write(subscriber.name, cursor)
        return None

    def attempt(self, subscriber: Subscriber, settings: SenderSettings, cursor: Cursor, line: LogLine, entry: dict,
                event: str | None) -> bool:
        """One POST of one entry, its outcome written to the cursor; True when the cursor moved past the entry."""
        try:
            key = subscriber.signing_key()
        except InvalidEventsConfig as exc:
            outcome = Attempt("retry", None, str(exc))  # an unset secret variable: wait for it, never send unsigned
        else:
            body = payload_body(entry, event, line.position + 1, line.delivery_id)
            outcome = self.poster(str(subscriber.url), body, request_headers(body, event, line.delivery_id, key),
                                  settings.timeout_s)
        moved = True
        if outcome.verdict == "delivered":
            cursor.delivered += 1
            cursor.last_delivered_at = utc_now()
            cursor.advance()
        else:
            cursor.failures += 1
            cursor.last_error = outcome.error
            if outcome.verdict == "refused":
                cursor.client_errors += 1
            if cursor.client_errors >= settings.client_error_attempts:
                log.error("events: %s refused line %d (%s) %d times (%s): skipped", subscriber.name,
                          line.position + 1, event, cursor.client_errors, outcome.error)
                cursor.skip(SkippedEvent(position=line.position + 1, event=event, status=outcome.status,
                                         error=outcome.error or "", time=utc_now()))
            else:
                cursor.next_try_epoch = self.clock() + settings.backoff_s(cursor.failures)
                moved = False
                log.warning("events: delivering line %d (%s) to %s failed (%s), try %d; next in %.1fs",
                            line.position + 1, event, subscriber.name, outcome.error, cursor.failures,
                            settings.backoff_s(cursor.failures))
        self.cursors.write(subscriber.name, cursor)
        return moved
