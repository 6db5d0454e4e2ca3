"""Where the judge's quality figures come from: a quality source, asked off the event loop at most every `refresh_s`
per route, and only for canaries whose SLO judges quality.

A source is any callable `(model, environment, since_s) -> {(version, arm): ArmQuality}` (gateway.guardrails)
reporting each arm's live accuracy over the last `since_s` seconds (here: since the canary started, so both arms are
measured over the same period). `onnxgate serve` uses `live_quality_source(store_root)`: the captured predictions
joined with the labels sent to POST /feedback (monitoring.quality.live_quality), so a canary judged on quality needs
data capture on (`onnxgate capture`) and labels coming back. `no_quality_figures` reports nothing, which leaves the
quality check inconclusive.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from gateway.guardrails import ArmQuality, QualityFigures
from monitoring.quality import live_quality

log = logging.getLogger("onnxgate.gateway")

QualitySource = Callable[[str, str, float], QualityFigures]


def no_quality_figures(model: str, environment: str, since_s: float) -> QualityFigures:
    return {}


def live_quality_source(store_root: Path) -> QualitySource:
    """Each arm's accuracy from the store's captured predictions and the labels that came back for them."""
    def figures(model: str, environment: str, since_s: float) -> QualityFigures:
        report = live_quality(store_root, model, environment, since_s)
        return {(arm.version, arm.arm): ArmQuality(arm.labelled_rows, arm.accuracy) for arm in report.arms}
    return figures


class QualityFeed:
    """The latest figures per (model, environment), refreshed from `source` at most every `refresh_s`. A source that
    fails keeps the last figures (logged): a broken labels log must not stop the other checks."""

    def __init__(self, source: QualitySource = no_quality_figures, refresh_s: float = 5.0) -> None:
        self.source = source
        self.refresh_s = refresh_s
        self._fetched: dict[tuple[str, str], tuple[float, QualityFigures]] = {}

    async def figures(self, model: str, environment: str, since_s: float, now: float) -> QualityFigures:
        key = (model, environment)
        fetched = self._fetched.get(key)
        if fetched is not None and now - fetched[0] < self.refresh_s:
            return fetched[1]
        try:
            figures = await anyio.to_thread.run_sync(self.source, model, environment, since_s)
        except Exception:  # noqa: BLE001 - any source's failure: keep judging on the last figures
            log.exception("quality figures of %s in %s unavailable", model, environment)
            figures = fetched[1] if fetched is not None else {}
        self._fetched[key] = (now, figures)
        return figures
