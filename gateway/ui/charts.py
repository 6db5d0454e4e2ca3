"""The geometry of the dashboard's small charts: the judge's recent windows (gateway.judge.JudgedWindow.as_json) as
polylines per arm, against the limit each window was held to. Pure: plain data in, SVG coordinates out; the template
draws them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

WIDTH = 300
HEIGHT = 80
PAD = 4
ARMS = ("stable", "canary")


@dataclass(frozen=True)
class Panel:
    title: str
    lines: list[tuple[str, str]]  # (arm or "limit", "x,y x,y ...")
    breaches: list[float]  # x of each window judged a breach
    top: str  # the value at the top edge, as text
    latest: dict[str, str]  # arm -> the latest value, as text
    dots: list[tuple[str, float, float]]  # (arm, x, y) of each arm's latest point: one window draws no line
    width: int = WIDTH
    height: int = HEIGHT


def _x(index: int, count: int) -> float:
    return PAD + (WIDTH - 2 * PAD) * (index / (count - 1) if count > 1 else 0.5)


def _y(value: float, top: float) -> float:
    return HEIGHT - PAD - (HEIGHT - 2 * PAD) * min(value / top, 1.0)


def _points(values: list[float | None], top: float) -> str:
    return " ".join(f"{_x(i, len(values)):.1f},{_y(v, top):.1f}" for i, v in enumerate(values) if v is not None)


def _panel(title: str, windows: list[dict], value: Callable[[dict], float | None],
           limit: Callable[[dict], float | None], text: Callable[[float], str], floor: float,
           limit_cap: float | None = None) -> Panel:
    """`limit_cap`: the scale stops at this many times the highest figure measured, even when the limit is higher
    (a latency limit far above what was measured would flatten the lines); the limit is then drawn along the top edge
    and its value is in the caption."""
    series = {arm: [value(w["arms"][arm]) if arm in w["arms"] else None for w in windows] for arm in ARMS}
    limits = [limit(w) for w in windows]
    measured = [v for values in series.values() for v in values if v is not None]
    set_limits = [v for v in limits if v is not None]
    highest = max([floor, *measured])
    highest_limit = max(set_limits, default=0.0)
    top = max(highest, highest_limit if limit_cap is None else min(highest_limit, limit_cap * highest)) * 1.15
    lines = []
    if len(set_limits) == 1:  # one point draws no line: the limit across the chart
        lines.append(("limit", f"{PAD},{_y(set_limits[0], top):.1f} {WIDTH - PAD},{_y(set_limits[0], top):.1f}"))
    elif set_limits:
        lines.append(("limit", _points(limits, top)))
    lines += [(arm, _points(values, top)) for arm, values in series.items() if any(v is not None for v in values)]
    latest = {arm: text(values[-1]) for arm, values in series.items() if values and values[-1] is not None}
    if set_limits:
        latest["limit"] = text(set_limits[-1])
    breaches = [_x(i, len(windows)) for i, w in enumerate(windows) if w.get("verdict") == "breach"]
    dots = [(arm, _x(i, len(values)), _y(values[i], top)) for arm, values in series.items()
            for i in [max((i for i, v in enumerate(values) if v is not None), default=-1)] if i >= 0]
    return Panel(title, lines, breaches, text(top), latest, dots)


def window_charts(windows: list[dict]) -> list[Panel]:
    """Two panels (latency quantile and error rate, each arm against its limit), or none without windows."""
    if not windows:
        return []
    quantile = f"p{windows[-1]['quantile'] * 100:g}"
    return [
        _panel(f"{quantile} latency (ms)", windows, lambda arm: arm["latency_ms"],
               lambda w: w["latency_limit_ms"] if w["latency_limit_ms"] is not None else w["max_latency_ms"],
               lambda v: f"{v:.2f}", floor=0.01, limit_cap=4.0),
        _panel("error rate", windows, lambda arm: arm["error_rate"], lambda w: w["max_error_rate"],
               lambda v: f"{v:.1%}", floor=0.001),
    ]
