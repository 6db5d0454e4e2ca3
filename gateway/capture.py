"""Data capture off the request path: the service offers a sampled answer to a bounded queue (never blocking: a full
queue drops it and counts the drop), and one writer thread turns queued answers into JSON lines and appends them to
the store's capture files (monitoring/capture.py: one file per model, environment, hour and worker pid, rotated and
size-bounded), every FLUSH_S. The application's lifespan starts the writer (`start`) and its end stops it after
writing what is queued (`close`); offers before `start` wait in the queue."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import NamedTuple

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from modelstore.metadata import ModelMetadata
from monitoring.capture import CaptureFiles, capture_record

log = logging.getLogger("onnxgate.gateway")

BATCH = 256  # records per write at most
FLUSH_S = 0.2  # how often the writer looks for queued records


class Captured(NamedTuple):
    request_id: str
    epoch_s: float
    model: str
    environment: str
    version: str
    arm: str
    metadata: ModelMetadata
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


class Capture:
    """The queue is a deque the request path appends to (no lock, no wake-up: a queue.Queue's condition variable and
    the GIL hand-off to a woken writer cost the event loop ~15 µs a captured request, measured); the writer wakes every
    FLUSH_S, or at once when asked to stop or drain."""

    def __init__(self, files: CaptureFiles, max_queue: int, registry: CollectorRegistry) -> None:
        self.files = files
        self.max_queue = max_queue
        self._pending: deque[Captured] = deque()
        self._accepted = 0  # offers queued (event loop thread)
        self._handled = 0  # of those, written or failed (writer thread)
        self._records = Counter("capture_records", "Answers offered to data capture, by outcome: written, dropped "
                                "(the queue was full) or failed (the file could not be written)",
                                ["model", "environment", "outcome"], registry=registry)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    def offer(self, item: Captured) -> bool:
        """Queue `item` for the writer; False (and counted as dropped) when the queue is full."""
        if len(self._pending) >= self.max_queue:
            self._records.labels(item.model, item.environment, "dropped").inc()
            return False
        self._pending.append(item)
        self._accepted += 1
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="onnxgate-capture", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer (a writer stuck on its disk is left behind, a daemon thread,
        rather than hang the shutdown)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("capture writer still busy at shutdown; %d queued records not written", len(self._pending))

    def join(self, timeout_s: float = 60.0) -> bool:
        """Wait until every item queued so far is written (or failed); False if that takes over `timeout_s`."""
        target = self._accepted
        deadline = time.monotonic() + timeout_s
        while self._handled < target:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.005)
        return True

    def _write_forever(self) -> None:
        pending = self._pending
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            while pending:
                items = [pending.popleft() for _ in range(min(BATCH, len(pending)))]
                try:
                    self.write(items)
                except Exception:  # noqa: BLE001 - the writer must outlive a record it cannot encode
                    log.exception("capture: %d records not written", len(items))
                    for item in items:
                        self._records.labels(item.model, item.environment, "failed").inc()
                finally:
                    self._handled += len(items)
            if self._stopping:
                return

    def write(self, items: list[Captured]) -> None:
        groups: dict[tuple[str, str], list[bytes]] = {}
        for item in items:
            record = capture_record(item.request_id, item.epoch_s, item.model, item.environment, item.version,
                                    item.arm, item.metadata, item.feeds, item.outputs)
            groups.setdefault((item.model, item.environment), []).append(
                orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        for (model, environment), lines in groups.items():
            try:
                self.files.append(model, environment, lines, items[-1].epoch_s)
            except OSError as exc:
                log.warning("capture of %s in %s: %d records not written: %s", model, environment, len(lines), exc)
                self._records.labels(model, environment, "failed").inc(len(lines))
                continue
            self._records.labels(model, environment, "written").inc(len(lines))
