"""Live drift in the gateway: a window per (model, environment, version) with reference statistics, its reports, its
gauges.

The same version may serve several environments (one LoadedModel, shared by their routes): its rows are counted
separately for each, so that one environment's report never holds another's traffic.

    window_for   at load: the version's windows, one per environment this gateway serves (each kept across reloads
                 while the version's files stay the same), or None when the version has no usable reference
                 statistics or drift is off; the service adds a served request's rows to the window of the
                 environment it was asked for (a pinned request's too; the default environment when none was named)
    report       GET /drift/{model}: this worker's live blocks of the (model, environment, version) merged with the
                 other workers' snapshots (gateway/drift_snapshots.py), compared with the reference by
                 monitoring.drift.drift_report
    refresh_figures  before /metrics is read (and before a worker's metrics snapshot): the figures the gauges export
                 for every environment's stable version, from that environment's window over every worker's traffic
    run          every drift_flush_s and at shutdown, only where there is something to keep in time: with several
                 workers, count what the windows buffered and write this worker's snapshot; with a time window,
                 count it, so that rows are dated within drift_flush_s of their request. With one worker and a window
                 of rows nothing runs: a window counts its buffer when it is full and when a report reads it.

File reads, snapshot writes and the drift computations run off the event loop; the windows are only touched on it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.drift_snapshots import WindowKey, read_snapshots, write_snapshot
from gateway.drift_window import Block, DriftWindow, WindowSpec, window_totals
from gateway.metrics import DriftFigures
from gateway.settings import GatewaySettings
from modelstore.metadata import ModelMetadata
from monitoring.drift import DriftLayout, DriftReport, DriftThresholds, drift_report

log = logging.getLogger("onnxgate.gateway")

UNAVAILABLE = "unavailable"
NO_STATISTICS = "the version's metadata holds no reference statistics usable for drift"


@dataclass(frozen=True)
class Watched:
    """One route's stable version, whose drift the gauges show."""

    model: str
    environment: str
    metadata: ModelMetadata


def identity(metadata: ModelMetadata) -> tuple[str, str]:
    """What tells a version's files apart when it is published again under the same number (force)."""
    return metadata.model_sha256, metadata.created_at


class DriftMonitor:
    def __init__(self, settings: GatewaySettings, clock: Callable[[], float] = time.time,
                 settle: Callable[[], None] = lambda: None) -> None:
        """`settle` adds to the windows the answers not added yet (AnswerLedger.settle): every reader calls it."""
        self.enabled = settings.drift_enabled
        self.settle = settle
        self.spec = WindowSpec(settings.drift_window_rows, settings.drift_window_s)
        self.thresholds: DriftThresholds = settings.drift_thresholds
        self.directory: Path | None = settings.metrics_dir
        self.flush_s = settings.drift_flush_s
        self.clock = clock
        self.environments = tuple(settings.environments)
        self._lock = threading.Lock()  # window_for runs on the loader's threads
        self._layouts: dict[tuple[str, str], tuple[tuple[str, str], DriftLayout | None]] = {}  # (model, version)
        self._windows: dict[WindowKey, tuple[tuple[str, str], DriftWindow]] = {}
        self.figures: list[DriftFigures] = []  # what the gauges show, replaced whole by each refresh_figures

    # -- windows -----------------------------------------------------------------------------------------------

    def layout(self, metadata: ModelMetadata) -> DriftLayout | None:
        key, ident = (metadata.name, metadata.version), identity(metadata)
        with self._lock:
            cached = self._layouts.get(key)
            if cached is not None and cached[0] == ident:
                return cached[1]
        layout = DriftLayout.of(metadata)
        with self._lock:
            self._layouts[key] = (ident, layout)
        return layout

    def window_for(self, metadata: ModelMetadata) -> dict[str, DriftWindow] | None:
        """The version's window for each served environment (environment -> window), made at load so that a request
        costs one dict lookup and no allocation; a window's blocks and buffer are allocated when it first counts."""
        if not self.enabled:
            return None
        layout = self.layout(metadata)
        if layout is None:
            return None
        ident = identity(metadata)
        windows = {}
        with self._lock:
            for environment in self.environments:
                key = (metadata.name, environment, metadata.version)
                kept = self._windows.get(key)
                if kept is None or kept[0] != ident:
                    kept = self._windows[key] = (ident, DriftWindow(layout, self.spec, *counted_names(metadata),
                                                                    clock=self.clock))
                windows[environment] = kept[1]
        return windows

    def own_blocks(self, only: WindowKey | None = None) -> dict[WindowKey, list[Block]]:
        """This worker's blocks (of one window, or all), after counting what the windows buffered. Event loop."""
        self.settle()
        with self._lock:
            windows = [(key, window) for key, (_, window) in self._windows.items() if only in (None, key)]
        blocks = {}
        for key, window in windows:
            window.count_pending()
            blocks[key] = window.blocks()
        return blocks

    # -- reports -----------------------------------------------------------------------------------------------

    async def report(self, metadata: ModelMetadata, environment: str) -> dict:
        """GET /drift/{model}'s answer for this version in `environment`, over every worker's traffic there."""
        key = (metadata.name, environment, metadata.version)
        own = self.own_blocks(key).get(key, [])
        return await asyncio.to_thread(self.merged_report, metadata, environment, own)

    def merged_report(self, metadata: ModelMetadata, environment: str, own: list[Block]) -> dict:
        layout = self.layout(metadata)
        if not self.enabled or layout is None:
            return unavailable(metadata, environment, self.enabled)
        others = self.other_blocks()
        key = (metadata.name, environment, metadata.version)
        return self.compute(layout, metadata, environment, [*own, *others.get(key, [])]).model_dump(mode="json")

    def other_blocks(self) -> dict[WindowKey, list[Block]]:
        merged: dict[WindowKey, list[Block]] = {}
        if self.directory is None or not self.directory.is_dir():
            return merged
        for snapshot in read_snapshots(self.directory, os.getpid()):
            for key, blocks in snapshot.items():
                merged.setdefault(key, []).extend(blocks)
        return merged

    def compute(self, layout: DriftLayout, metadata: ModelMetadata, environment: str,
                blocks: Iterable[Block]) -> DriftReport:
        totals = window_totals(blocks, self.spec, self.clock(), layout.empty_feature_counts().shape,
                               layout.empty_prediction_counts().shape)
        return drift_report(layout, totals.features, totals.predictions, totals.rows, self.thresholds,
                            model=metadata.name, version=metadata.version, environment=environment)

    # -- the gauges ---------------------------------------------------------------------------------------------

    async def refresh_figures(self, watched: list[Watched]) -> None:
        """Recompute what the gauges show, when they are read rather than on a timer: a report per route costs a few
        ms, ~0.5% of the CPU of a gateway serving the benchmark's logistic regression flat out if done every second
        (bench/README.md "Live drift")."""
        if not self.enabled:
            return
        own = self.own_blocks()
        try:
            self.figures = await asyncio.to_thread(self.figures_of, own, watched)
        except Exception:  # an unreadable snapshot directory must not fail /metrics; the gauges keep their figures
            log.exception("drift figures failed")

    def figures_of(self, own: Mapping[WindowKey, list[Block]], watched: list[Watched]) -> list[DriftFigures]:
        others = self.other_blocks()
        figures = []
        for route in watched:
            layout = self.layout(route.metadata)
            if layout is None:
                continue
            key = (route.metadata.name, route.environment, route.metadata.version)
            report = self.compute(layout, route.metadata, route.environment, [*own.get(key, []), *others.get(key, [])])
            figures.append(figures_of(route, report))
        return figures

    # -- the flush timer ---------------------------------------------------------------------------------------

    @property
    def needs_timer(self) -> bool:
        return self.enabled and (self.directory is not None or self.spec.seconds is not None)

    async def run(self, stop: asyncio.Event) -> None:
        """Count (and write the snapshot, with several workers) now, every flush_s, and once more when `stop` is set
        (after the last request). Stopped through `stop`, not cancelled, which would skip that last write."""
        if not self.needs_timer:
            return
        pid = os.getpid()
        while True:
            own = self.own_blocks()
            if self.directory is not None:
                try:
                    await asyncio.to_thread(write_snapshot, self.directory, own, pid)
                except Exception:  # a full disk must not stop the worker; the next flush tries again
                    log.exception("drift snapshot failed")
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.flush_s)


def counted_names(metadata: ModelMetadata) -> tuple[list[str], list[str]]:
    """The inputs and outputs monitoring.drift.DriftLayout reads: the reference's input (and a text model's attention
    mask), and the output the prediction reference describes."""
    stats = metadata.reference_stats
    feeds = [stats.input] if stats.input else []
    if metadata.tokenizer is not None and metadata.tokenizer.attention_mask:
        feeds.append(metadata.tokenizer.attention_mask)
    outputs = [stats.prediction.output] if stats.prediction is not None else []
    return feeds, outputs


def figures_of(route: Watched, report: DriftReport) -> DriftFigures:
    features = [(feature.name, feature.psi, feature.ks) for feature in report.features]
    return DriftFigures(route.model, route.environment, report.status, report.window_rows, report.drifted_share,
                        report.prediction.psi, features)


def unavailable(metadata: ModelMetadata, environment: str, enabled: bool) -> dict:
    reason = ("live drift is off in this gateway (ONNXGATE_DRIFT_ENABLED=false)" if not enabled
              else metadata.reference_stats.reason or NO_STATISTICS)
    return {"model": metadata.name, "version": metadata.version, "environment": environment, "status": UNAVAILABLE,
            "reason": reason, "window_rows": 0}
