"""One version's live drift window in one worker: a fixed ring of count blocks, whatever the traffic.

A served request is only held by reference (an append, no copy and no counting on the request path); every
HOLD_ROWS rows, the held requests are copied into a buffer of `buffer_rows` rows, one concatenation per input and
output. The buffer is counted in one vectorised call when it is full, and by the drift flush timer
(gateway/drift_monitor.py). Counts go into the current block; a block closes when it holds
`block_rows` rows (the window's rows / `slices`) or, with a time window, when it has been open window_s / slices
seconds. The ring keeps the last `capacity` closed blocks plus the open one:

    rows only:        slices + 1 blocks: the newest hold at least the window's rows
    rows and seconds: 2 * slices + 1 blocks: of 2 * slices closed blocks, at least `slices` closed on rows (together
                      the window's rows) or on time (together at least window_s), so the window is always covered

A block's counts are int64 arrays of a fixed shape per layout, so memory per version is (capacity + 1) x (feature
counts + prediction counts) x 8 bytes, plus the buffer's `buffer_rows` rows of each input and output, and the
arrays of the requests held (at most HOLD_ROWS rows).
`window_totals` adds blocks newest first (this worker's and the others', merged by their end times) until the
window's rows are reached, and leaves out blocks that ended before the time window.
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
    buffer_rows: int = 1024

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


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one input or output is buffered: `capacity` rows of its row shape and dtype."""

    name: str
    rows: np.ndarray

    @classmethod
    def like(cls, name: str, array: np.ndarray, capacity: int) -> Slot:
        return cls(name, np.empty((capacity, *array.shape[1:]), array.dtype))


Held = tuple[Arrays, Arrays, int]  # a served request's inputs, outputs and row count


class RowBuffer:
    """Served rows waiting to be counted: the inputs and outputs the layout reads, copied into arrays allocated once
    (`rows` rows each), so that no request's own arrays outlive the few requests held before the copy."""

    def __init__(self, rows: int, feed_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.capacity = rows
        self.rows = 0
        self.names = [(False, name) for name in feed_names] + [(True, name) for name in output_names]
        # allocated by reshape() for the first request of a shape; none before
        self.feed_slots: list[Slot] = []
        self.output_slots: list[Slot] = []
        self.absent: list[tuple[bool, str]] = []  # names the requests buffered now did not have

    def put(self, feeds: Arrays, outputs: Arrays, rows: int) -> bool:
        """Copy the request's rows in, if they fit: room left, the same names present, `rows` rows in each array.
        Row shapes and dtypes are not compared: a version's signature fixes them (validated inputs, the session's
        outputs); another row shape raises (unless numpy can broadcast it, which a fixed signature rules out),
        another dtype is cast."""
        start = self.rows
        end = start + rows
        if end > self.capacity or not self.feed_slots:
            return False
        try:
            for slots, arrays in ((self.feed_slots, feeds), (self.output_slots, outputs)):
                for slot in slots:
                    array = arrays[slot.name]
                    if len(array) != rows:  # numpy would broadcast one row into several
                        return False
                    slot.rows[start:end] = array
        except (KeyError, TypeError, ValueError):  # a name missing, a scalar, a shape that does not fit
            return False
        if self.absent:
            for is_output, name in self.absent:
                if name in (outputs if is_output else feeds):
                    return False
        self.rows = end
        return True

    def put_held(self, held: Sequence[Held], rows: int) -> bool:
        """Copy several requests of `rows` rows in all, one concatenation per input and output, if they fit as
        `put` would take each of them; False (nothing taken) when any does not, for `put` to take them one by one."""
        start = self.rows
        end = start + rows
        if end > self.capacity or not self.feed_slots or self.absent:
            return False
        try:
            for slot in self.feed_slots:
                name = slot.name
                # an array of other rows or row shape makes the joined length or shape differ from `out`'s: raises
                np.concatenate([feeds[name] for feeds, _, _ in held], out=slot.rows[start:end], casting="unsafe")
            for slot in self.output_slots:
                name = slot.name
                np.concatenate([outputs[name] for _, outputs, _ in held], out=slot.rows[start:end], casting="unsafe")
        except (KeyError, TypeError, ValueError):  # a name missing, a scalar, a shape that does not fit
            return False
        self.rows = end
        return True

    def reshape(self, feeds: Arrays, outputs: Arrays) -> None:
        """Arrays for this request's row shapes and dtypes, of the names it has (the buffer must be empty)."""
        self.feed_slots, self.output_slots, self.absent = [], [], []
        for is_output, name in self.names:
            array = (outputs if is_output else feeds).get(name)
            if array is None or array.ndim == 0:
                self.absent.append((is_output, name))
                continue
            (self.output_slots if is_output else self.feed_slots).append(Slot.like(name, array, self.capacity))

    def take(self) -> tuple[Arrays, Arrays]:
        """Views of the buffered rows (inputs, outputs), valid until the next put; the buffer is empty after."""
        rows, self.rows = self.rows, 0
        return ({slot.name: slot.rows[:rows] for slot in self.feed_slots},
                {slot.name: slot.rows[:rows] for slot in self.output_slots})


HOLD_ROWS = 32
"""Served rows kept by reference before they are copied into the buffer together: per request, an append instead of
a copy per input and output (~1.6% CPU per request over HTTP on the benchmark's logistic regression, bench/README.md).
Few, so that little memory stays held: holding 1,024 rows' arrays until they were counted cost ~4% in an earlier
round."""


class DriftWindow:
    """Updated and read on the event loop's thread only (like gateway/metrics.py's plain numbers): no lock."""

    def __init__(self, counter: Counter, spec: WindowSpec, feed_names: Sequence[str], output_names: Sequence[str],
                 clock: Callable[[], float] = time.time) -> None:
        """`feed_names`, `output_names`: the inputs and outputs the layout counts (the others are not kept)."""
        self.counter = counter
        self.spec = spec
        self.clock = clock
        self.closed: deque[Block] = deque(maxlen=spec.capacity)
        self.current: Block | None = None
        self.buffer = RowBuffer(spec.buffer_rows, feed_names, output_names)
        self.held: list[Held] = []
        self.held_rows = 0
        self.hold_rows = min(HOLD_ROWS, spec.buffer_rows)

    def add(self, feeds: Arrays, outputs: Arrays, rows: int) -> None:
        """One served request: held by reference with the few before it, then copied into the buffer with them."""
        held_rows = self.held_rows + rows
        if held_rows > self.hold_rows:
            self.gather()
            if rows > self.hold_rows:  # a large request: copied at once
                self.copy(feeds, outputs, rows)
                return
            held_rows = rows
        self.held.append((feeds, outputs, rows))
        self.held_rows = held_rows

    def gather(self) -> None:
        """Copy the held requests into the buffer (together, else one by one), counting it when it is full."""
        held = self.held
        if not held:
            return
        rows = self.held_rows
        self.held, self.held_rows = [], 0
        buffer = self.buffer
        if buffer.rows + rows > buffer.capacity:
            self.count_buffered()
        if not buffer.put_held(held, rows):
            for feeds, outputs, request_rows in held:
                self.copy(feeds, outputs, request_rows)
        elif buffer.rows == buffer.capacity:
            self.count_buffered()

    def copy(self, feeds: Arrays, outputs: Arrays, rows: int) -> None:
        """One request's rows copied into the buffer, counted when the buffer is full."""
        buffer = self.buffer
        if not buffer.put(feeds, outputs, rows):
            self.count_buffered()
            buffer.reshape(feeds, outputs)
            if not buffer.put(feeds, outputs, rows):  # more rows than the buffer holds, or a shape it cannot hold
                self.count(feeds, outputs)
                return
        if buffer.rows == buffer.capacity:
            self.count_buffered()

    def count_pending(self) -> None:
        """Count the held and buffered rows into the window, in one vectorised call (also rotates a time window's
        block)."""
        self.gather()
        self.count_buffered()

    def count_buffered(self) -> None:
        if self.buffer.rows:
            self.count(*self.buffer.take())
        else:
            self.rotate(self.clock())

    def count(self, feeds: Arrays, outputs: Arrays) -> None:
        counter = self.counter
        try:
            table = counter.feature_table(feeds)
            if table is None:
                return
            features = counter.count_features(table)
            predictions = counter.count_predictions(outputs)
        except (KeyError, ValueError, IndexError, TypeError):  # inputs the layout cannot read: not counted
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
