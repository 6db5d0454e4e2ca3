"""One version's live drift window in one worker: a fixed ring of count blocks, whatever the traffic.

A served request only appends its feeds and outputs to a short buffer (O(1), no numpy on the request path); the
buffer is counted in one vectorised call when it holds `buffer_rows` rows, and by the drift flush timer
(gateway/drift_monitor.py). Counts go into the current block; a block closes when it holds `block_rows` rows (the
window's rows / `slices`) or, with a time window, when it has been open window_s / slices seconds. The ring keeps the
last `capacity` closed blocks plus the open one:

    rows only:        slices + 1 blocks: the newest hold at least the window's rows
    rows and seconds: 2 * slices + 1 blocks: of 2 * slices closed blocks, at least `slices` closed on rows (together
                      the window's rows) or on time (together at least window_s), so the window is always covered

A block's counts are int64 arrays of a fixed shape per layout, so memory per version is capacity x (feature counts +
prediction counts) x 8 bytes. `window_totals` adds blocks newest first (this worker's and the others', merged by
their end times) until the window's rows are reached, and leaves out blocks that ended before the time window.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Arrays = Mapping[str, np.ndarray]


class Counter(Protocol):
    """What the window needs of a version's drift layout (monitoring.drift.DriftLayout)."""

    def feature_table(self, feeds: Arrays) -> np.ndarray | None: ...

    def count_features(self, table: np.ndarray) -> np.ndarray: ...

    def count_predictions(self, outputs: Arrays) -> np.ndarray: ...

    def empty_feature_counts(self) -> np.ndarray: ...

    def empty_prediction_counts(self) -> np.ndarray: ...


@dataclass(frozen=True)
class WindowSpec:
    rows: int
    seconds: float | None = None
    slices: int = 20
    buffer_rows: int = 256

    @property
    def block_rows(self) -> int:
        return max(1, math.ceil(self.rows / self.slices))

    @property
    def block_seconds(self) -> float | None:
        return None if self.seconds is None else self.seconds / self.slices

    @property
    def capacity(self) -> int:
        """Closed blocks kept, besides the open one (see the module's docstring)."""
        return self.slices if self.seconds is None else 2 * self.slices


@dataclass(slots=True)
class Block:
    features: np.ndarray  # int64 counts, the layout's shape
    predictions: np.ndarray
    rows: int
    started: float  # wall-clock seconds: blocks of several workers are ordered by `ended`
    ended: float


@dataclass(frozen=True)
class Totals:
    features: np.ndarray
    predictions: np.ndarray
    rows: int


class DriftWindow:
    """Updated and read on the event loop's thread only (like gateway/metrics.py's plain numbers): no lock."""

    def __init__(self, counter: Counter, spec: WindowSpec, clock: Callable[[], float] = time.time) -> None:
        self.counter = counter
        self.spec = spec
        self.clock = clock
        self.closed: deque[Block] = deque(maxlen=spec.capacity)
        self.current: Block | None = None
        self.pending: list[tuple[Arrays, Arrays]] = []
        self.pending_rows = 0
        self.uncounted = 0  # rows whose feeds or outputs the layout could not count (e.g. outputs not asked for)

    def add(self, feeds: Arrays, outputs: Arrays, rows: int) -> None:
        """One served request (on the request path: an append; counting waits for a full buffer)."""
        self.pending.append((feeds, outputs))
        self.pending_rows += rows
        if self.pending_rows >= self.spec.buffer_rows:
            self.count_pending()

    def count_pending(self) -> None:
        """Count the buffered requests into the window, in one vectorised call per run of alike requests."""
        if not self.pending:
            self.rotate(self.clock())
            return
        pending, self.pending, self.pending_rows = self.pending, [], 0
        for feeds, outputs in joined(pending):
            self.count(feeds, outputs)

    def count(self, feeds: Arrays, outputs: Arrays) -> None:
        counter = self.counter
        try:
            table = counter.feature_table(feeds)
            if table is None:
                return
            features = counter.count_features(table)
            predictions = counter.count_predictions(outputs)
        except (KeyError, ValueError, IndexError, TypeError):
            self.uncounted += len(next(iter(feeds.values()), ()))
            return
        now = self.clock()
        self.rotate(now)
        block = self.current
        if block is None:
            block = self.current = Block(counter.empty_feature_counts(), counter.empty_prediction_counts(), 0, now, now)
        block.features += features
        block.predictions += predictions
        block.rows += len(table)
        block.ended = now
        if block.rows >= self.spec.block_rows:
            self.close()

    def rotate(self, now: float) -> None:
        """Close the open block once it has been open for a time slice (time windows only)."""
        block_seconds = self.spec.block_seconds
        if block_seconds is not None and self.current is not None and now - self.current.started >= block_seconds:
            self.close()

    def close(self) -> None:
        if self.current is not None:
            self.closed.append(self.current)  # the deque's maxlen drops the oldest
            self.current = None

    def blocks(self) -> list[Block]:
        """Every block held, oldest first (the open one last); copies, so a reader may keep them."""
        held = [*self.closed, *([self.current] if self.current is not None else [])]
        return [Block(b.features.copy(), b.predictions.copy(), b.rows, b.started, b.ended) for b in held]


def joined(pending: Sequence[tuple[Arrays, Arrays]]) -> Iterable[tuple[Arrays, Arrays]]:
    """Runs of consecutive requests with the same input and output names, each joined along axis 0 into one
    request; a run whose arrays do not join (shapes differ past axis 0) is given request by request."""
    start = 0
    while start < len(pending):
        keys = (tuple(pending[start][0]), tuple(pending[start][1]))
        end = start + 1
        while end < len(pending) and (tuple(pending[end][0]), tuple(pending[end][1])) == keys:
            end += 1
        run = pending[start:end]
        if len(run) == 1:
            yield run[0]
        else:
            try:
                yield ({name: np.concatenate([feeds[name] for feeds, _ in run]) for name in keys[0]},
                       {name: np.concatenate([outputs[name] for _, outputs in run]) for name in keys[1]})
            except ValueError:
                yield from run
        start = end


def window_totals(blocks: Iterable[Block], spec: WindowSpec, now: float, feature_shape: tuple[int, ...],
                  prediction_shape: tuple[int, ...]) -> Totals:
    """The window's counts: blocks newest first (by end time) until the window's rows are reached; with a time
    window, only blocks that ended within it. Blocks of another shape (a version re-published with other
    statistics) are skipped."""
    features = np.zeros(feature_shape, dtype=np.int64)
    predictions = np.zeros(prediction_shape, dtype=np.int64)
    rows = 0
    oldest = None if spec.seconds is None else now - spec.seconds
    for block in sorted(blocks, key=lambda b: b.ended, reverse=True):
        if rows >= spec.rows or (oldest is not None and block.ended < oldest):
            break
        if block.features.shape != feature_shape or block.predictions.shape != prediction_shape:
            continue
        features += block.features
        predictions += block.predictions
        rows += block.rows
    return Totals(features, predictions, rows)
