"""Adaptive batching of one loaded version: concurrent requests joined along axis 0 into one session.run, split back.

    submit   a request's feeds; its outputs at once when it ran alone on the event loop, else a future of them (or
             of the exception its run raised)
    alone    with nothing queued or running and no queue delay, a request runs at once, alone, as without batching
             (inline when its measured cost is under the inline threshold, else on a run thread), unless others are
             on their way: another request reached the batcher in this event loop iteration (they were parsed while
             the first one's run held the loop), or the last drain found requests waiting together. Then it queues,
             and so do those after it, until a drain finds one request with nobody to join it
    queue    a drain takes the oldest request and the later ones that can join it (the same inputs, dtypes and
             shapes past axis 0, the same outputs asked for), up to max_batch_size rows
    drain    when the run in flight ends; with none in flight, right after the current event loop iteration with
             max_queue_delay_ms 0 (only what is already waiting, Triton's default), else when the oldest has waited
             that long; a full batch starts at once on a free run thread
    run      a joined run goes to a run thread when its measured cost is at least joined_thread_min_s, so the event
             loop parses the next batch's requests while it runs (as Triton's dynamic batcher does); a cheaper one
             runs inline, where a thread hop would cost more than it frees
    split    each output's rows go back to their request; a joined run that raises (or whose outputs do not have one
             row per input row) is run again request by request, so one bad request fails alone

Runs in flight per version are capped at the run executor's threads, and a second starts only for a full batch:
requests wait for the run in flight rather than start small runs beside it. The batcher sits below routing: it is one
version's, so a canary and its stable version never share a run. Everything but the runs happens on the event loop's
thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from gateway.metrics import BatchMetrics
from modelstore.metadata import BatchingPolicy

log = logging.getLogger("onnxgate.gateway")

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
Run = Callable[[Feeds, "list[str] | None"], Outputs]
JoinKey = tuple


def batch_rows(feeds: Feeds) -> int | None:
    """The rows every input shares along axis 0, or None when they do not (or an input is a scalar): not joinable."""
    rows = None
    for array in feeds.values():
        if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
            return None
        rows = array.shape[0]
    return rows


def join_key(feeds: Feeds, output_names: list[str] | None) -> JoinKey | None:
    """Requests with equal keys can be joined; None: this one runs alone."""
    if batch_rows(feeds) is None:
        return None
    inputs = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items()))
    return inputs, tuple(output_names) if output_names else None


def join(requests: list[Feeds]) -> Feeds:
    return {name: np.concatenate([feeds[name] for feeds in requests]) for name in requests[0]}


def split(outputs: Outputs, rows: list[int]) -> list[Outputs] | None:
    """Each request's rows of every output, or None when an output does not have one row per input row."""
    total = sum(rows)
    if any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()):
        return None
    bounds = list(accumulate(rows))[:-1]
    parts = {name: np.split(array, bounds) for name, array in outputs.items()}
    return [{name: parts[name][index] for name in outputs} for index in range(len(rows))]


def run_joined(run: Run, requests: list[Feeds], rows: list[int], output_names: list[str] | None) -> list[Outputs | Exception]:
    """One run for all the requests, split back; if it fails or cannot be split, one run per request, each with its
    own outputs or its own exception."""
    if len(requests) > 1:
        try:
            parts = split(run(join(requests), output_names), rows)
        except Exception as exc:  # noqa: BLE001 - which request caused it is found by running them alone
            log.debug("joined run of %d requests failed, running them alone: %s", len(requests), exc)
            parts = None
        if parts is not None:
            return parts
    results: list[Outputs | Exception] = []
    for feeds in requests:
        try:
            results.append(run(feeds, output_names))
        except Exception as exc:  # noqa: BLE001 - handed to its own request, mapped there
            results.append(exc)
    return results


@dataclass(slots=True, eq=False)
class Pending:
    feeds: Feeds
    rows: int
    key: JoinKey | None
    output_names: list[str] | None
    future: asyncio.Future
    queued_at: float  # loop.time()


class Batcher:
    """One version's queue of requests waiting for a run, and the runs in flight."""

    def __init__(
        self,
        run: Run,
        cost_s: Callable[[int], float],
        policy: BatchingPolicy,
        executor: Executor,
        *,
        max_in_flight: int,
        inline_max_s: float,
        joined_thread_min_s: float,
        metrics: BatchMetrics,
    ) -> None:
        self._run = run
        self._cost_s = cost_s
        self._max_rows = policy.max_batch_size
        self._delay_s = policy.max_queue_delay_ms / 1000
        self._executor = executor
        self._max_in_flight = max_in_flight
        self._inline_max_s = inline_max_s
        self._joined_thread_min_s = joined_thread_min_s
        self.metrics = metrics
        self._queue: deque[Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._drain_soon = False
        self._timer: asyncio.TimerHandle | None = None
        self._seen_this_iteration = False  # a request ran alone in the current event loop iteration
        self._company = False  # requests come together: each queues to be joined, even when nothing runs

    def submit(self, feeds: Feeds, rows: int, output_names: list[str] | None = None) -> Outputs | asyncio.Future:
        """The request's outputs when it ran alone at once on the event loop (raising what its run raised), else a
        future of them."""
        loop = asyncio.get_running_loop()
        # a second request in one loop iteration was parsed while the first one's run held the loop, perhaps with
        # others: it queues for them (and the drain that joins them sets _company)
        if not (self._queue or self._in_flight or self._company or self._delay_s or self._seen_this_iteration):
            self._seen_this_iteration = True
            loop.call_soon(self._next_iteration)
            return self._run_alone(loop, feeds, rows, output_names)
        pending = Pending(feeds, batch_rows(feeds) or rows, join_key(feeds, output_names), output_names,
                          loop.create_future(), loop.time())
        self._queue.append(pending)
        self._queued_rows += pending.rows
        self._schedule(loop)
        return pending.future

    def _next_iteration(self) -> None:
        self._seen_this_iteration = False

    def _run_alone(self, loop: asyncio.AbstractEventLoop, feeds: Feeds, rows: int,
                   output_names: list[str] | None) -> Outputs | asyncio.Future:
        self.metrics.record_wait(0.0)
        self.metrics.record_run(rows)
        if self._cost_s(rows) <= self._inline_max_s:
            return self._run(feeds, output_names)
        self._in_flight += 1
        running = loop.run_in_executor(self._executor, self._run, feeds, output_names)
        running.add_done_callback(self._ran_alone)
        return running

    def _ran_alone(self, _: asyncio.Future) -> None:
        self._in_flight -= 1
        if self._queue:
            self._drain()

    def _may_start(self) -> bool:
        """A run may start now: a run thread is free, and nothing is running or a full batch is waiting."""
        in_flight = self._in_flight
        return in_flight == 0 or (in_flight < self._max_in_flight and self._queued_rows >= self._max_rows)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._may_start():
            return  # the run in flight drains when it ends
        if self._delay_s == 0 or self._queued_rows >= self._max_rows:
            if not self._drain_soon:
                self._drain_soon = True
                loop.call_soon(self._drain)
        elif self._timer is None:
            self._timer = loop.call_at(self._queue[0].queued_at + self._delay_s, self._drain)

    def _drain(self) -> None:
        self._drain_soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._queue and self._may_start():
            oldest = self._queue[0]
            if self._delay_s and self._queued_rows < self._max_rows and loop.time() < oldest.queued_at + self._delay_s:
                self._timer = loop.call_at(oldest.queued_at + self._delay_s, self._drain)
                return
            batch = self._take()
            if batch:
                self._company = len(batch) > 1 or bool(self._queue)
                self._start(loop, batch)

    def _take(self) -> list[Pending]:
        """The oldest live request and, in queue order, those that can join it; the others keep their places."""
        queue = self._queue
        while queue and queue[0].future.done():  # its caller went away
            self._queued_rows -= queue.popleft().rows
        if not queue:
            return []
        first = queue.popleft()
        batch, rows, kept = [first], first.rows, deque()
        while queue and first.key is not None and rows < self._max_rows:
            pending = queue.popleft()
            if pending.future.done():
                self._queued_rows -= pending.rows
            elif pending.key == first.key and rows + pending.rows <= self._max_rows:
                batch.append(pending)
                rows += pending.rows
            else:
                kept.append(pending)
        kept.extend(queue)
        self._queue = kept
        self._queued_rows -= rows
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[Pending]) -> None:
        now = loop.time()
        for pending in batch:
            self.metrics.record_wait(now - pending.queued_at)
        rows = [pending.rows for pending in batch]
        self.metrics.record_run(sum(rows))
        job = functools.partial(run_joined, self._run, [pending.feeds for pending in batch], rows, batch[0].output_names)
        cost_s = self._cost_s(sum(rows))
        if cost_s <= self._inline_max_s and (len(batch) == 1 or cost_s < self._joined_thread_min_s):
            self._answer(batch, job())
            return
        self._in_flight += 1
        try:
            running = loop.run_in_executor(self._executor, job)
        except Exception as exc:  # noqa: BLE001 - e.g. the executor shut down with the service: every request fails
            self._in_flight -= 1
            self._answer(batch, [exc] * len(batch))
            return
        running.add_done_callback(functools.partial(self._finished, batch))

    def _finished(self, batch: list[Pending], running: asyncio.Future) -> None:
        self._in_flight -= 1
        if running.cancelled():
            results: list = [asyncio.CancelledError()] * len(batch)
        elif running.exception() is not None:
            results = [running.exception()] * len(batch)
        else:
            results = running.result()
        self._answer(batch, results)
        if self._queue:
            self._drain()

    @staticmethod
    def _answer(batch: list[Pending], results: list[Outputs | BaseException]) -> None:
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
