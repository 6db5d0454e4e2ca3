"""Labelled feedback: what the callers later learned about answered requests, appended to a labels log.

    <store>/.monitoring/<model>/<environment>/labels-<YYYYMMDDTHH>.jsonl

One JSON object a line: id (the request id the answer carried), time (epoch seconds, when it was received), and
`label` (a classifier's true class, as /predict names classes) or `value` (a regressor's true value); for a request of
several rows, a list of one per row. Append-only; one file per hour, so that a reader over a `since` window opens only
the hours it covers. Not pruned yet: labels are small next to captured requests, but an operator removes old hours.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from monitoring.capture import SUFFIX, hour_of, monitoring_dir, read_lines

LABELS_PREFIX = "labels-"
MAX_ID_CHARS = 128
REQUEST_ID = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no spaces: safe in a header, a log line and a file


class InvalidFeedback(ValueError):
    """A feedback body that is not a list of {"id", "label" | "value"} objects."""


def valid_request_id(value: object) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_CHARS and REQUEST_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Feedback:
    id: str
    kind: str  # "label" or "value"
    truth: object

    def as_json(self, now: float) -> dict:
        return {"id": self.id, "time": now, self.kind: self.truth}


def parse_feedback(body: object) -> list[Feedback]:
    """`[{"id": ..., "label": ...}, ...]` (or `"value"` for regressors): each id a request id, each label a string,
    an integer or a boolean (or a list of them, one per row), each value a finite number (or a list of them)."""
    if not isinstance(body, list):
        raise InvalidFeedback('feedback must be a JSON list of {"id": ..., "label": ...} (or "value") objects')
    items = []
    for index, item in enumerate(body):
        where = f"feedback item {index}"
        if not isinstance(item, dict):
            raise InvalidFeedback(f"{where} is not an object")
        if not valid_request_id(item.get("id")):
            raise InvalidFeedback(f'{where}: "id" must be a string of 1 to {MAX_ID_CHARS} visible ASCII characters')
        kinds = [kind for kind in ("label", "value") if kind in item]
        if len(kinds) != 1 or set(item) - {"id", kinds[0]}:
            raise InvalidFeedback(f'{where} must have "id" and exactly one of "label" or "value", nothing else')
        kind = kinds[0]
        truth = item[kind]
        check = _valid_label if kind == "label" else _valid_value
        if not (check(truth) or (isinstance(truth, list) and truth and all(check(one) for one in truth))):
            what = "a string, integer or boolean" if kind == "label" else "a finite number"
            raise InvalidFeedback(f'{where}: "{kind}" must be {what}, or a non-empty list of them (one per row)')
        items.append(Feedback(item["id"], kind, truth))
    return items


def _valid_label(value: object) -> bool:
    return isinstance(value, str | bool) or (type(value) is int)


def _valid_value(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def append_labels(store_root: Path, model: str, environment: str, items: list[Feedback], now: float) -> None:
    """One write (O_APPEND) for the whole batch, so concurrent writers never interleave inside a line."""
    if not items:
        return
    directory = monitoring_dir(store_root, model, environment)
    directory.mkdir(parents=True, exist_ok=True)
    lines = b"".join(orjson.dumps(item.as_json(now)) + b"\n" for item in items)
    fd = os.open(directory / f"{LABELS_PREFIX}{hour_of(now)}{SUFFIX}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines)
    finally:
        os.close(fd)


def read_labels(store_root: Path, model: str, environment: str, since_epoch_s: float = 0.0) -> Iterator[dict]:
    """Labels received at or after `since_epoch_s`, in the order received (hour files in order)."""
    directory = monitoring_dir(store_root, model, environment)
    try:
        names = sorted(name for name in os.listdir(directory) if name.startswith(LABELS_PREFIX) and name.endswith(SUFFIX))
    except FileNotFoundError:
        return
    first_hour = hour_of(since_epoch_s)
    for name in names:
        if name[len(LABELS_PREFIX):-len(SUFFIX)] < first_hour:
            continue
        records, _ = read_lines(directory / name)
        for record in records:
            when = record.get("time")
            if isinstance(when, int | float) and when >= since_epoch_s and valid_request_id(record.get("id")):
                yield record
