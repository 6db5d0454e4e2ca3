"""Metrics that add up across uvicorn workers.

Each worker keeps its own numbers (gateway/metrics.py: plain Python numbers on the request path; prometheus_client's
multiprocess mode would write an mmap on every update instead). With a metrics directory set, every worker writes
what its registry collects to `<dir>/worker-<pid>.json` every `metrics_flush_s` seconds and once more at shutdown,
and a scrape of /metrics answers the worker's own live numbers merged with every other worker's latest snapshot: the
other workers' numbers are at most `metrics_flush_s` (plus one write) old.

Merge rule, per sample name and label set: counter, histogram and summary samples add up; `_created` samples take
the earliest; gauges (and the other types) take the largest. A gauge such as models_loaded or canary_weight is one
worker's view of the same store, not its share of a total: adding them would count each model once per worker, and
the largest is the safe upper bound.

Snapshots of workers that have exited stay in the directory, so that no counter goes backwards when uvicorn replaces
a worker; their gauges are left out (a dead worker's last canary_weight says nothing about what is served now).
`onnxgate serve` makes a fresh directory for each run and removes it afterwards.

Cost, for ~60 series (tests/gateway/measure_worker_metrics.py, on a 2-core VM): a snapshot collects on the event loop
in ~0.5 ms and encodes and writes off it in ~1.5 ms, once per `metrics_flush_s`; a merged scrape takes ~5.5 ms, most of
it off the event loop, against ~2.8 ms for generate_latest alone.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from modelstore.fileio import atomic_write

log = logging.getLogger("onnxgate.gateway")

SNAPSHOT_GLOB = "worker-*.json"
SUMMED_TYPES = frozenset({"counter", "histogram", "summary"})
# What a snapshot that is not ours to trust can raise while read and decoded (JSONDecodeError is a ValueError).
UNREADABLE = (OSError, ValueError, TypeError, KeyError, AttributeError)

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def snapshot_path(directory: Path, pid: int) -> Path:
    return directory / f"worker-{pid}.json"


def encode(families: Iterable[Metric]) -> bytes:
    return json.dumps([
        {"name": family.name, "type": family.type, "documentation": family.documentation, "unit": family.unit,
         "samples": [[sample.name, sample.labels, sample.value] for sample in family.samples]}
        for family in families
    ]).encode()


def decode(data: bytes) -> list[Metric]:
    families = []
    for entry in json.loads(data):
        family = Metric(entry["name"], entry["documentation"], entry["type"], entry["unit"])
        for name, labels, value in entry["samples"]:
            family.add_sample(str(name), {str(key): str(label) for key, label in labels.items()}, float(value))
        families.append(family)
    return families


def write_snapshot(directory: Path, families: Iterable[Metric], pid: int) -> None:
    """Replace `pid`'s snapshot atomically: a reader sees the previous file or this one, never half of one. Not
    fsynced: it is rewritten every flush."""
    atomic_write(snapshot_path(directory, pid), encode(families), durable=False)


def read_snapshots(directory: Path, skip_pid: int) -> list[list[Metric]]:
    """Every other worker's latest snapshot, exited workers' included but for their gauges; an unreadable file is
    skipped."""
    skipped = snapshot_path(directory, skip_pid).name
    snapshots = []
    for path in sorted(directory.glob(SNAPSHOT_GLOB)):
        if path.name == skipped:
            continue
        try:
            families = decode(path.read_bytes())
        except UNREADABLE as exc:
            log.warning("metrics snapshot %s skipped: %s", path, exc)
            continue
        if not worker_alive(path):
            families = [family for family in families if family.type in SUMMED_TYPES]
        snapshots.append(families)
    return snapshots


def worker_alive(snapshot: Path) -> bool:
    """Whether the process that wrote `worker-<pid>.json` still runs (the workers share this host, and the directory)."""
    try:
        os.kill(int(snapshot.stem.removeprefix("worker-")), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError, OSError):
        return True
    return True


def combine(family: Metric, sample: str, first: float, second: float) -> float:
    if sample == family.name + "_created":
        return min(first, second)
    if family.type in SUMMED_TYPES:
        return first + second
    return max(first, second)


def merge(collections: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One family per name, its samples combined per name and label set; families and samples in the order first
    seen, so that the first collection alone comes out exactly as it went in."""
    families: dict[str, Metric] = {}
    samples: dict[str, dict[SampleKey, Sample]] = {}
    for collection in collections:
        for family in collection:
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                samples[family.name] = {}
            kept = samples[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                previous = kept.get(key)
                kept[key] = sample if previous is None else previous._replace(
                    value=combine(merged, sample.name, previous.value, sample.value))
    for name, family in families.items():
        family.samples = list(samples[name].values())
    return list(families.values())


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merged_exposition(live: list[Metric], directory: Path, pid: int) -> bytes:
    return generate_latest(_Families(merge([live, *read_snapshots(directory, pid)])))


async def exposition(registry: CollectorRegistry, directory: Path) -> bytes:
    """/metrics in the Prometheus text format: this worker's live numbers and the other workers' snapshots (the
    caller refreshes what is computed when read, such as the drift gauges, first)."""
    # Collected on the event loop, the only thread that updates the per-request numbers (gateway/metrics.py); the
    # file reads and the merge run off it.
    live = list(registry.collect())
    return await asyncio.to_thread(merged_exposition, live, directory, os.getpid())


async def flush_snapshots(registry: CollectorRegistry, directory: Path, interval_s: float, stop: asyncio.Event,
                          refresh: Callable[[], Awaitable[None]] | None = None) -> None:
    """Write this worker's snapshot now, every `interval_s`, and once more when `stop` is set (at shutdown, after
    the last request). Stopped through `stop` rather than cancelled, which would skip that final write. `refresh`:
    awaited before each, to recompute what is computed when read (the drift gauges)."""
    pid = os.getpid()
    while True:
        if refresh is not None:
            await refresh()
        families = list(registry.collect())  # on the event loop, as above
        try:
            await asyncio.to_thread(write_snapshot, directory, families, pid)
        except Exception:  # a full disk must not stop the worker; the next flush tries again
            log.exception("metrics snapshot to %s failed", directory)
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
