"""Live quality: captured predictions joined with the labels that came back for them, per version and arm.

`live_quality(store_root, model, environment, since_s)` is the one entry point: `GET /quality/{model}`, `onnxgate
quality` and the rollout judge all call it. A label (`label`) scores the captured prediction by accuracy (the predicted
label as /predict names it, equal to the label); a value (`value`) by RMSE and MAE. Requests captured and labels
received within the last `since_s` seconds count; a label's last value for an id wins. Labels whose id is in no
captured record of the window are counted (`unknown_ids`), as are labels that cannot be compared with their record
(another number of rows, or a regressor's output that is not one number per row: `unusable`).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitoring.capture import read_captures
from monitoring.feedback import read_labels

DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> float:
    """`7d`, `24h`, `30m`, `90s` or plain seconds -> seconds (positive)."""
    match = DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidDuration(f"not a duration: {text!r} (e.g. 7d, 24h, 30m, 90s)")
    return float(match.group(1)) * UNIT_S[match.group(2)]


@dataclass(frozen=True)
class ArmQuality:
    """One (version, arm)'s live quality: `labelled_rows` compared, accuracy (labels) or RMSE and MAE (values)."""

    version: str
    arm: str
    labelled_rows: int
    accuracy: float | None = None
    rmse: float | None = None
    mae: float | None = None

    def as_json(self) -> dict:
        figures = {"version": self.version, "arm": self.arm, "labelled_rows": self.labelled_rows}
        for name in ("accuracy", "rmse", "mae"):
            value = getattr(self, name)
            if value is not None:
                figures[name] = value
        return figures


@dataclass(frozen=True)
class QualityReport:
    model: str
    environment: str
    since_s: float
    labels: int  # labels received in the window (one per id)
    matched: int  # of those, with a captured record
    unknown_ids: int
    unusable: int
    arms: tuple[ArmQuality, ...] = field(default_factory=tuple)

    def arm(self, version: str, arm: str | None = None) -> ArmQuality | None:
        """The figures of `version` (in `arm`, when given)."""
        return next((one for one in self.arms if one.version == version and (arm is None or one.arm == arm)), None)

    def as_json(self) -> dict:
        return {"model": self.model, "environment": self.environment, "since_s": self.since_s, "labels": self.labels,
                "matched": self.matched, "unknown_ids": self.unknown_ids, "unusable": self.unusable,
                "arms": [arm.as_json() for arm in self.arms]}


class _Tally:
    __slots__ = ("hits", "labelled", "errors")

    def __init__(self) -> None:
        self.hits = 0
        self.labelled = 0
        self.errors: list[float] = []


def live_quality(store_root: Path, model: str, environment: str, since_s: float, *,
                 now: float | None = None) -> QualityReport:
    now = time.time() if now is None else now
    since = now - since_s
    captured = {record["id"]: record for record in read_captures(store_root, model, environment, since)}
    labels = {record["id"]: record for record in read_labels(store_root, model, environment, since)}
    tallies: dict[tuple[str, str], _Tally] = {}
    unknown = unusable = 0
    for request_id, label in labels.items():
        record = captured.get(request_id)
        if record is None:
            unknown += 1
            continue
        kind = "label" if "label" in label else "value"
        truth = label.get(kind)
        truths = truth if isinstance(truth, list) else [truth]
        predictions = record.get("prediction")
        if not isinstance(predictions, list) or len(predictions) != len(truths):
            unusable += 1
            continue
        key = (str(record.get("version")), str(record.get("arm")))
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = _Tally()
        if kind == "label":
            tally.hits += sum(predicted == true for predicted, true in zip(predictions, truths, strict=True))
            tally.labelled += len(truths)
        elif all(_number(p) for p in predictions) and all(_number(t) for t in truths):
            tally.errors.extend(float(p) - float(t) for p, t in zip(predictions, truths, strict=True))
        else:
            unusable += 1
    arms = tuple(_figures(version, arm, tally) for (version, arm), tally in sorted(tallies.items()))
    return QualityReport(model, environment, since_s, len(labels), len(labels) - unknown, unknown, unusable, arms)


def _number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _figures(version: str, arm: str, tally: _Tally) -> ArmQuality:
    accuracy = rmse = mae = None
    if tally.labelled:
        accuracy = tally.hits / tally.labelled
    if tally.errors:
        errors = np.asarray(tally.errors, dtype=np.float64)
        rmse = float(np.sqrt(np.mean(errors * errors)))
        mae = float(np.mean(np.abs(errors)))
    return ArmQuality(version, arm, tally.labelled + len(tally.errors), accuracy, rmse, mae)
