"""Where each request goes (the canary split, the shadow mirror) and how each arm did (sliding windows).

Pure: no I/O and no clock reads; the caller passes `now` (Unix seconds) and a random source.

The split is sticky: a request with a routing key lands in bucket(salt, key) in [0, 10000) and goes to the canary iff
its bucket is below round(weight * 100). Raising the weight only raises the threshold, so a user in the canary at 5% is
still in it at 25%. The salt is the deployment's `routing_salt` (registry.json): a client that does not know it cannot
compute which keys land in the canary, and two deployments split the same users differently. The Node loader computes
the same buckets (tests/vectors/routing.json holds shared vectors). Without a key the draw is random, not sticky.

Windows: a ring of slots (one second each, longer for judging windows over a minute: at most MAX_SLOTS), each holding
request and error counts and a sparse histogram of latencies in log-spaced bins (4% wide). The gateway records a
batch of requests at a time (`record_many`: one lock, C-level counters per slot), off the request path (it holds them
first: gateway/answer_ledger.py, gateway/rollout_state.py); memory is bounded by the ring whatever the traffic;
quantiles are read at judge time by merging the live slots, accurate to about 2% — well inside the 1.5x / +2 ms
margins the judge uses. A deque of raw samples would be exact but grows with traffic; a random reservoir would make
the judge's verdicts, and its tests, depend on chance. While prediction drift is judged, a slot also counts the arm's
predicted classes, at most MAX_CLASSES_PER_SLOT distinct ones (further classes are counted together as
OTHER_CLASSES).
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import math
import operator
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

BUCKETS = 10_000
Arm = Literal["stable", "canary", "shadow"]


class RandomSource(Protocol):
    def random(self) -> float: ...


class SplitState(Protocol):
    """What the split reads from a canary or shadow: modelstore.registry.CanaryState and ShadowState qualify."""

    version: str
    weight: float


class DeploymentView(Protocol):
    """What choose_arm reads from a deployment: modelstore.registry.Deployment qualifies."""

    version: str
    canary: SplitState | None
    shadow: SplitState | None
    routing_salt: str | None


def bucket(key: str, salt: str | None = None) -> int:
    """First 8 bytes of sha256(UTF-8 salt + NUL + UTF-8 key), unsigned big-endian, modulo 10000; without a salt,
    of sha256(UTF-8 key) (deployments from before salts keep their users' sides). Salts are hex: the NUL between
    the two parts makes the concatenation unambiguous."""
    data = key.encode("utf-8") if salt is None else b"%b\x00%b" % (salt.encode("utf-8"), key.encode("utf-8"))
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") % BUCKETS


def threshold(weight: float) -> int:
    """Buckets below this go to the canary. Python's round (half to even), as the Node loader does too."""
    return round(weight * 100)


def selected(weight: float, routing_key: str | None, salt: str | None, rng: RandomSource) -> bool:
    """Whether a request takes a split of `weight` percent: sticky by routing key (its bucket under the salt), at
    random without one."""
    if routing_key is None:
        return rng.random() * 100 < weight
    return bucket(routing_key, salt) < threshold(weight)


def choose_arm(deployment: DeploymentView, routing_key: str | None, rng: RandomSource) -> tuple[Arm, str]:
    """("canary", its version) for the canary's share of traffic, else ("stable", the stable version): the split
    tests/vectors/routing.json pins for the Node loader too. The gateway makes the same `selected` call with the
    weight and salt its route holds (Service.select)."""
    canary = deployment.canary
    if canary is not None and selected(canary.weight, routing_key, deployment.routing_salt, rng):
        return "canary", canary.version
    return "stable", deployment.version


def choose_shadow(deployment: DeploymentView, routing_key: str | None, rng: RandomSource) -> str | None:
    """The shadow version to mirror this request to, or None. Sticky by key like the canary split."""
    shadow = deployment.shadow
    if shadow is not None and selected(shadow.weight, routing_key, deployment.routing_salt, rng):
        return shadow.version
    return None


# --- windows ----------------------------------------------------------------------------------------------------

GROWTH = 1.04
MIN_LATENCY_S = 1e-6
MAX_SOURCES_PER_SLOT = 1024
"""Distinct sources (routing keys or client addresses) counted per slot, as hashes: at most ~100 KB a slot. Requests
from sources beyond the cap still count per request, not per source."""
MAX_CLASSES_PER_SLOT = 64
"""Distinct predicted classes counted per slot (a classifier's labels, as text): at most ~6 KB a slot, ~0.8 MB for an
arm's whole ring at the cap. Rows of further classes are counted under OTHER_CLASSES, so the shares still add up to
1; a model with more classes than this is judged on its first 63 per slot and the rest as one."""
OTHER_CLASSES = "(other classes)"


MAX_LATENCY_BIN = 880
"""Bins up to ~1e9 s (MIN_LATENCY_S * GROWTH ** 880); longer latencies share the last bin."""
_BIN_UPPER_BOUNDS = tuple(MIN_LATENCY_S * GROWTH ** (index + 1) for index in range(MAX_LATENCY_BIN))

latency_bin = functools.partial(bisect.bisect_right, _BIN_UPPER_BOUNDS)
"""The bin of a latency in seconds: `index` holds [MIN_LATENCY_S * GROWTH ** index, the next bound), the first one
everything shorter too. A bisection in C, so that counting a batch's bins is one Counter over a map."""


def bin_value(index: int) -> float:
    """The geometric middle of a bin, in seconds."""
    return MIN_LATENCY_S * GROWTH ** (index + 0.5)


is_not_none = functools.partial(operator.is_not, None)


@dataclass(frozen=True)
class WindowSummary:
    """One arm over one window: what the judge compares. `latency_s` is the chosen quantile of the latency per unit of
    work (see gateway.service: per row, or per row and KB of text) over all requests (failed ones too: a timeout is
    slow before it is an error), None when there were none. `sources` counts the distinct sources seen (up to the cap
    per slot), `failing_sources` those that saw a failure, and `source_error_rate` is the mean over those sources of
    each one's error rate: one source, one vote, however many requests it sends."""

    requests: int = 0
    errors: int = 0
    latency_s: float | None = None
    quantile: float = 0.95
    version: str | None = None
    sources: int = 0
    failing_sources: int = 0
    source_error_rate: float | None = None
    classes: dict[str, int] = field(default_factory=dict)  # predicted class -> rows, while prediction drift is on

    @property
    def predicted_rows(self) -> int:
        return sum(self.classes.values())

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency_s is None else self.latency_s * 1000


class _Slot:
    __slots__ = ("epoch", "requests", "errors", "bins", "sources", "failures", "classes")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.requests = 0
        self.errors = 0
        self.bins: dict[int, int] = {}
        self.sources: dict[int, int] = {}  # hash(source) -> requests
        self.failures: dict[int, int] = {}  # hash(source) -> failed requests
        self.classes: dict[str, int] = {}  # predicted class -> rows


class SlidingWindow:
    """Observations of one arm for the last `horizon_s` seconds, in `slot_s` slots. Safe to record from threads.
    Also counts every request and failure since it was created (`total_requests`, `total_errors`): the early test
    reads them in O(1)."""

    def __init__(self, horizon_s: float = 60.0, slot_s: float = 1.0) -> None:
        self.slot_s = slot_s
        self.slot_count = max(1, math.ceil(horizon_s / slot_s))
        self._slots: list[_Slot | None] = [None] * self.slot_count
        self._lock = threading.Lock()
        self.total_requests = 0
        self.total_errors = 0

    def record(self, latency_s: float, ok: bool, now: float, source: str | None = None) -> None:
        self.record_many(((latency_s, ok, now, source),))

    def record_many(self, records: Iterable[tuple]) -> None:
        """Requests as (latency, ok, now, source, ...) (further fields are not read), in the order they were answered,
        counted per slot with C-level counters (bins, sources) rather than one request at a time: the gateway folds
        its held recordings in here."""
        columns = tuple(zip(*records, strict=True))
        if not columns:
            return
        latencies, oks, nows, sources = columns[:4]
        slot_s = self.slot_s
        first, last = int(min(nows) // slot_s), int(max(nows) // slot_s)
        with self._lock:
            self.total_requests += len(oks)
            self.total_errors += len(oks) - sum(oks)
            if first == last:  # all in one slot: the usual batch
                self._add(first, latencies, oks, sources)
                return
            by_epoch: dict[int, list[tuple[float, bool, float, str | None]]] = {}
            for record in zip(latencies, oks, nows, sources, strict=True):
                by_epoch.setdefault(int(record[2] // slot_s), []).append(record)
            for epoch in sorted(by_epoch):  # an epoch older than the ring is dropped in any order
                _, slot_oks, _, slot_sources = zip(*by_epoch[epoch], strict=True)
                self._add(epoch, [record[0] for record in by_epoch[epoch]], slot_oks, slot_sources)

    def _add(self, epoch: int, latencies: Sequence[float], oks: Sequence[bool], sources: Sequence[str | None]) -> None:
        """Requests of one slot, as record_many's columns. Called under the lock."""
        slot = self._slot(epoch)
        if slot is None:
            return
        slot.requests += len(oks)
        failed = len(oks) - sum(oks)
        slot.errors += failed
        bins = slot.bins
        for index, count in Counter(map(latency_bin, latencies)).items():
            bins[index] = bins.get(index, 0) + count
        if sources.count(sources[0]) == len(sources):  # one source (or none) sent them all: the usual batch
            seen = {} if sources[0] is None else {hash(sources[0]): len(sources)}
        else:
            seen = Counter(map(hash, filter(is_not_none, sources)))
        if not seen:
            return
        counted = slot.sources
        for key, count in seen.items():  # first appearances in order: the cap admits the same sources as one by one
            known = counted.get(key)
            if known is not None:
                counted[key] = known + count
            elif len(counted) < MAX_SOURCES_PER_SLOT:
                counted[key] = count
        if failed:
            failures = slot.failures
            for source, ok in zip(sources, oks, strict=True):
                if not ok and source is not None and (key := hash(source)) in counted:
                    failures[key] = failures.get(key, 0) + 1

    def record_classes(self, counts: Iterable[tuple[str, int]], now: float) -> None:
        """Rows predicted as each class by one request (see predicted_counts)."""
        with self._lock:
            slot = self._slot(int(now // self.slot_s))
            if slot is None:
                return
            classes = slot.classes
            for label, count in counts:
                if label not in classes and len(classes) >= MAX_CLASSES_PER_SLOT - 1:
                    label = OTHER_CLASSES  # one entry kept free for it
                classes[label] = classes.get(label, 0) + count

    def _slot(self, epoch: int) -> _Slot | None:
        """The slot for `epoch` (a fresh one when its place held an older epoch); None for an epoch older than the
        ring: nothing left to add it to. Called under the lock."""
        slot = self._slots[epoch % self.slot_count]
        if slot is None or slot.epoch != epoch:
            if slot is not None and slot.epoch > epoch:
                return None
            slot = self._slots[epoch % self.slot_count] = _Slot(epoch)
        return slot

    def summary(self, now: float, span_s: float, quantile: float, version: str | None = None) -> WindowSummary:
        """The slots that began in the last `span_s` seconds (capped at the horizon): judged every `span_s`, two
        summaries share at most one slot. A span shorter than a slot still reads the current slot, or a judge
        ticking late in a second would see an empty window."""
        current = int(now // self.slot_s)
        oldest = min(max(math.ceil((now - span_s) / self.slot_s), current - self.slot_count + 1), current)
        requests = errors = 0
        merged: dict[int, int] = {}
        sources: dict[int, int] = {}
        failures: dict[int, int] = {}
        classes: dict[str, int] = {}
        with self._lock:
            live = [s for s in self._slots if s is not None and oldest <= s.epoch <= current]
            for slot in live:
                requests += slot.requests
                errors += slot.errors
                for index, count in slot.bins.items():
                    merged[index] = merged.get(index, 0) + count
                for key, count in slot.sources.items():
                    sources[key] = sources.get(key, 0) + count
                for key, count in slot.failures.items():
                    failures[key] = failures.get(key, 0) + count
                for label, count in slot.classes.items():
                    classes[label] = classes.get(label, 0) + count
        source_error_rate = (sum(failed / sources[key] for key, failed in failures.items()) / len(sources)
                             if sources else None)
        return WindowSummary(requests, errors, _quantile(merged, requests, quantile), quantile, version,
                             len(sources), len(failures), source_error_rate, classes)


def _quantile(bins: dict[int, int], total: int, quantile: float) -> float | None:
    if total == 0:
        return None
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))


MAX_SLOTS = 120


class ArmWindows:
    """The windows of one model in one environment: one SlidingWindow per arm, tied to the version it measures (the
    first observation of a new version on an arm, after a promotion or a new canary, starts that arm afresh, so
    figures never mix versions). The ring keeps two judging windows, in at most MAX_SLOTS slots: a 5-minute window is
    judged on 5 minutes of data, in 5-second slots."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self.horizon_s = max(60.0, 2 * window_s)
        self.slot_s = max(1.0, self.horizon_s / MAX_SLOTS)
        self._arms: dict[str, tuple[str, SlidingWindow]] = {}

    def record(self, arm: Arm, version: str, latency_s: float, ok: bool, now: float,
               source: str | None = None) -> None:
        self.record_many(arm, version, ((latency_s, ok, now, source),))

    def record_many(self, arm: Arm, version: str, records: Iterable[tuple]) -> None:
        """`record` of each of (latency, ok, now, source), in one pass."""
        held = self._arms.get(arm)
        if held is None or held[0] != version:
            held = self._arms[arm] = (version, SlidingWindow(self.horizon_s, self.slot_s))
        held[1].record_many(records)

    def record_classes(self, arm: Arm, version: str, counts: Iterable[tuple[str, int]], now: float) -> None:
        """Predicted classes of a request `record` has already counted (nothing when the arm measures another
        version)."""
        window = self.window(arm, version)
        if window is not None:
            window.record_classes(counts, now)

    def window(self, arm: Arm, version: str) -> SlidingWindow | None:
        """That arm's window if it is measuring `version`."""
        held = self._arms.get(arm)
        return held[1] if held is not None and held[0] == version else None

    def summary(self, arm: Arm, version: str, now: float, span_s: float, quantile: float) -> WindowSummary:
        """That arm's figures over the last `span_s` if it has measured `version`, else an empty summary."""
        held = self._arms.get(arm)
        if held is None or held[0] != version:
            return WindowSummary(quantile=quantile, version=version)
        return held[1].summary(now, span_s, quantile, version)
