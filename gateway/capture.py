"""Data capture off the request path: the service offers a sampled answer to a bounded queue (never blocking: a full
queue drops it and counts the drop), and one writer thread turns queued answers into JSON lines and appends them to
the store's capture files (monitoring/capture.py: one file per model, environment, hour and worker pid, rotated and
size-bounded). The application's lifespan starts the writer (`start`) and its end stops it after writing what is
queued (`close`); offers before `start` wait in the queue."""
from __future__ import annotations

import logging
import queue
import threading
from typing import NamedTuple

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from modelstore.metadata import ModelMetadata
from monitoring.capture import CaptureFiles, capture_record

log = logging.getLogger("onnxgate.gateway")

BATCH = 256  # records written per wake-up of the writer at most


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
    def __init__(self, files: CaptureFiles, max_queue: int, registry: CollectorRegistry) -> None:
        self.files = files
        self._queue: queue.Queue[Captured | None] = queue.Queue(maxsize=max_queue)
        self._records = Counter("capture_records", "Answers offered to data capture, by outcome: written, dropped "
                                "(the queue was full) or failed (the file could not be written)",
                                ["model", "environment", "outcome"], registry=registry)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def offer(self, item: Captured) -> bool:
        """Queue `item` for the writer; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._records.labels(item.model, item.environment, "dropped").inc()
            return False
        return True

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_forever, name="onnxgate-capture", daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:  # a writer stuck on its disk: leave it (a daemon thread) rather than hang the shutdown
            log.warning("capture writer still busy at shutdown; %d queued records not written", self._queue.qsize())
            return
        thread.join(timeout_s)

    def join(self) -> None:
        """Wait until every queued item is written (or failed)."""
        self._queue.join()

    def _write_forever(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            try:
                self.write([item for item in items if item is not None])
            finally:
                for _ in items:
                    self._queue.task_done()
            if stop:
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
