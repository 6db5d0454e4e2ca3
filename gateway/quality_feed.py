"""Where the judge's quality figures come from: a quality source, asked off the event loop at most every `refresh_s`
per route, and only for canaries whose SLO judges quality.

A source is any callable `(model, environment, since_s) -> {(version, arm): ArmQuality}` (gateway.guardrails)
reporting each arm's live accuracy over the last `since_s` seconds (here: since the canary started, so both arms are
measured over the same period). The default reports nothing, which leaves the quality check inconclusive. A live one
wraps monitoring.quality.live_quality, e.g.

    def live_figures(model, environment, since_s):
        report = live_quality(store_root, model, environment, since_s)
        return {(row.version, row.arm): ArmQuality(row.labelled_rows, row.accuracy) for row in report.rows}

and is handed to create_app(quality_source=...).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from gateway.guardrails import QualityFigures

log = logging.getLogger("onnxgate.gateway")

QualitySource = Callable[[str, str, float], QualityFigures]


def no_quality_figures(model: str, environment: str, since_s: float) -> QualityFigures:
    return {}


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
