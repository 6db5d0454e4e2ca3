"""Adaptive batching of one loaded version: concurrent requests joined along axis 0 into one session.run, split back.

    submit   a request's feeds; answered with its own outputs, or the exception its run raised
    idle     nothing queued, a run slot free and no queue delay: it runs at once, alone, as without batching; except
             a run cheap enough for the event loop while requests come faster than one run takes: nothing could
             join it while it runs there, so it queues, to be joined with the requests of its loop iteration
    queue    otherwise it waits; a drain takes the oldest request and the later ones that can join it (the same
             inputs, dtypes and shapes past axis 0, the same outputs asked for), up to max_batch_size rows
    drain    when a run slot frees; with max_queue_delay_ms 0 right after the current event loop iteration (only what
             is already waiting, Triton's default), else when the oldest has waited that long or the batch is full
    run      inline when the version's measured cost for the joined rows is under the inline threshold, else on the
             service's run executor, as unbatched runs are
    split    each output's rows go back to their request; a joined run that raises (or whose outputs do not have one
             row per input row) is run again request by request, so one bad request fails alone

Runs in flight per version are capped at the run executor's threads: more would only wait in the executor's queue,
where requests cannot join. The batcher sits below routing: it is one version's, so a canary and its stable version
never share a run. Everything but the runs happens on the event loop's thread.
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
        metrics: BatchMetrics,
    ) -> None:
        self._run = run
        self._cost_s = cost_s
        self._max_rows = policy.max_batch_size
        self._delay_s = policy.max_queue_delay_ms / 1000
        self._executor = executor
        self._max_in_flight = max_in_flight
        self._inline_max_s = inline_max_s
        self.metrics = metrics
        self._queue: deque[Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._drain_soon = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_submit = float("-inf")

    async def submit(self, feeds: Feeds, rows: int, output_names: list[str] | None = None) -> Outputs:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # a run cheap enough for the event loop leaves nothing to join while it runs there: it waits for its loop
        # iteration's company only when requests come faster than one run takes (not at one connection)
        alone = self._cost_s(rows) > self._inline_max_s or now - self._last_submit >= self._cost_s(1)
        self._last_submit = now
        if alone and not self._queue and self._in_flight < self._max_in_flight and self._delay_s == 0:
            return await self._run_alone(feeds, rows, output_names)
        key = join_key(feeds, output_names)
        pending = Pending(feeds, batch_rows(feeds) or rows, key, output_names, loop.create_future(), loop.time())
        self._queue.append(pending)
        self._queued_rows += pending.rows
        self._schedule(loop)
        return await pending.future

    async def _run_alone(self, feeds: Feeds, rows: int, output_names: list[str] | None) -> Outputs:
        self.metrics.record_wait(0.0)
        self.metrics.record_run(rows)
        if self._cost_s(rows) <= self._inline_max_s:
            return self._run(feeds, output_names)
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(self._executor, self._run, feeds, output_names)
        finally:
            self._in_flight -= 1
            if self._queue:
                self._drain()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._in_flight >= self._max_in_flight:
            return  # the run that ends first drains
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
        while self._queue and self._in_flight < self._max_in_flight:
            oldest = self._queue[0]
            if self._delay_s and self._queued_rows < self._max_rows and loop.time() < oldest.queued_at + self._delay_s:
                self._timer = loop.call_at(oldest.queued_at + self._delay_s, self._drain)
                return
            batch = self._take()
            if batch:
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
        if self._cost_s(sum(rows)) <= self._inline_max_s:
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
