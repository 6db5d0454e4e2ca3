"""What an answered request leaves to count (its metrics, its live-drift rows, its rollout recording), written down in
one entry and counted LEDGER_ENTRIES entries at a time.

Counting each answer as it went out made three calls into three objects on the request path, where caches are cold
between requests. An entry is one tuple appended to a list; `settle` counts the entries in one pass, a batch per
metrics series and per rollout arm (bench/README.md: 1.7% less CPU per request of a small model with a canary in
flight than holding answers in each of the three instead).

Every reader settles first, so no figure ever misses an answer: a /metrics scrape (GatewayMetrics.before_collect),
the drift windows' readers (DriftMonitor.own_blocks: reports, gauges, snapshots), the rollout windows' readers
(RolloutState.windows: the judge, the early test, /health), and a reload (before any version is let go). Entries hold
the request's arrays by reference: a request of more than MAX_HELD_ROWS rows settles the ledger at once, so at most
LEDGER_ENTRIES small requests are ever held. Written and settled on the event loop's thread (the lock guards a
settle from elsewhere: only the entries it took are removed, so none written meanwhile is lost).
"""
from __future__ import annotations

import threading
import time

import numpy as np

from gateway.loader import LoadedModel
from gateway.metrics import ModelMetrics
from gateway.rollout_state import Record, RolloutState
from gateway.traffic import Arm
from gateway.validation import Decoded

LEDGER_ENTRIES = 64
MAX_HELD_ROWS = 32

Entry = tuple[ModelMetrics, LoadedModel, str, RolloutState | None, Arm, Decoded, float, float, str | None,
              np.ndarray | None, dict[str, np.ndarray]]
"""(metrics series, loaded version, environment asked for, rollout state or None, arm, decoded request, finished
(perf_counter), elapsed, source, labels, outputs): a plain tuple, the cheapest record to make."""


class AnswerLedger:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._lock = threading.Lock()

    def settle(self) -> None:
        """Count every entry written so far."""
        entries = self.entries
        with self._lock:
            taken = len(entries)
            if not taken:
                return
            batch = entries[:taken]
            del entries[:taken]
            wall_offset = time.time() - time.perf_counter()  # perf_counter -> Unix seconds, for the rollout's slots
            answered: dict[ModelMetrics, tuple[list[float], list[np.ndarray | None]]] = {}
            judged: dict[tuple[RolloutState, Arm, str], list[Record]] = {}
            for metrics, loaded, environment, rollout, arm, decoded, finished, elapsed, source, labels, outputs in batch:
                counted = answered.get(metrics)
                if counted is None:
                    counted = answered[metrics] = ([], [])
                counted[0].append(elapsed)
                counted[1].append(labels)
                drift = loaded.drift
                if drift is not None:  # the window of the environment asked for, pinned or not
                    drift[environment].add(decoded.feeds, outputs, decoded.rows)
                if rollout is not None:
                    key = (rollout, arm, loaded.version)
                    records = judged.get(key)
                    if records is None:
                        records = judged[key] = []
                    records.append((elapsed / (decoded.units or decoded.rows), True, finished + wall_offset, source,
                                    labels))
            for metrics, (seconds, labels) in answered.items():
                metrics.record_answers(seconds, labels)
            for (rollout, arm, version), records in judged.items():
                rollout.record_many(arm, version, records)
