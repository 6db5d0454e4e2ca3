"""Captured requests: the files the gateway appends to and the readers (feedback matching, live quality) read.

    <store>/.monitoring/<model>/<environment>/capture-<YYYYMMDDTHH>-p<pid>-<n>.jsonl

One JSON object a line: id, time (epoch seconds), model, environment, version, arm, task, inputs (the feeds the model
ran, by input name), outputs (as /predict answers them: class ids mapped to labels), prediction (per row: the predicted
label of a classifier, the first output's value of a regressor; what labels are compared with). One file per model,
environment, hour and writing process (several gateway workers append at once, each to its own file); a file over
`file_max_bytes` is closed and the next one (`n` + 1) opened, and after each rotation the oldest files of the model and
environment are deleted until what is left is at most `total_max_bytes`. Lines are written whole, one write each, so a
reader sees complete lines (a last line without its newline is a write in progress, skipped).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from modelstore.layout import MONITORING_DIR
from modelstore.metadata import ModelMetadata
from modelstore.outputs import format_outputs
from modelstore.versions import check_name

CAPTURE_PREFIX = "capture-"
SUFFIX = ".jsonl"


def capture_record(request_id: str, epoch_s: float, model: str, environment: str, version: str, arm: str,
                   metadata: ModelMetadata, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict:
    """One captured request as a JSON-ready object (see the module's docstring for its fields)."""
    formatted = format_outputs(metadata, outputs)
    return {"id": request_id, "time": epoch_s, "model": model, "environment": environment, "version": version,
            "arm": arm, "task": metadata.task, "inputs": {name: array.tolist() for name, array in feeds.items()},
            "outputs": formatted, "prediction": prediction_of(metadata, formatted)}


def prediction_of(metadata: ModelMetadata, formatted: dict[str, list]) -> list | None:
    """Per row: the label output's value (a class name where metadata has labels), else the first output's value;
    a row of one value is that value."""
    name = metadata.label_output if metadata.label_output in formatted else next(
        (spec.name for spec in metadata.outputs if spec.name in formatted), next(iter(formatted), None))
    if name is None:
        return None
    values = formatted[name]
    if not isinstance(values, list):
        return [values]
    return [row[0] if isinstance(row, list) and len(row) == 1 else row for row in values]


def monitoring_dir(store_root: Path, model: str, environment: str) -> Path:
    """Where a model's captured requests and labels in one environment live (names checked: no path tricks)."""
    return Path(store_root) / MONITORING_DIR / check_name(model) / check_name(environment)


def hour_of(epoch_s: float) -> str:
    return time.strftime("%Y%m%dT%H", time.gmtime(epoch_s))


@dataclass(frozen=True)
class Bounds:
    file_max_bytes: int
    total_max_bytes: int


class CaptureFiles:
    """The append side for one writing process: opens, rotates and prunes the files of each model and environment.
    Not thread-safe: one writer thread owns it (gateway/capture.py)."""

    def __init__(self, store_root: Path, bounds: Bounds, pid: int | None = None) -> None:
        self.store_root = Path(store_root)
        self.bounds = bounds
        self.pid = os.getpid() if pid is None else pid
        self._open: dict[tuple[str, str], tuple[str, int, Path, int]] = {}  # (model, env) -> (hour, n, path, size)

    def append(self, model: str, environment: str, lines: list[bytes], now: float) -> None:
        """Append complete JSON lines to the model and environment's current file, moving to the next file when the
        hour has changed or a line would take the file over its bound (a line over the bound gets a file of its own)."""
        key = (model, environment)
        hour = hour_of(now)
        current = self._open.get(key)
        start = 0
        while start < len(lines):
            if current is None or current[0] != hour or (
                    current[3] and current[3] + len(lines[start]) > self.bounds.file_max_bytes):
                current = self._next_file(model, environment, hour, current)
            _, n, path, size = current
            end, chunk = start, 0
            while end < len(lines) and (end == start or size + chunk + len(lines[end]) <= self.bounds.file_max_bytes):
                chunk += len(lines[end])
                end += 1
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"".join(lines[start:end]))
            finally:
                os.close(fd)
            current = (hour, n, path, size + chunk)
            start = end
        self._open[key] = current

    def _next_file(self, model: str, environment: str, hour: str,
                   current: tuple[str, int, Path, int] | None) -> tuple[str, int, Path, int]:
        directory = monitoring_dir(self.store_root, model, environment)
        directory.mkdir(parents=True, exist_ok=True)
        n = current[1] + 1 if current is not None and current[0] == hour else 0
        while True:  # a restarted process with the same pid: never append to a file it did not open
            path = directory / f"{CAPTURE_PREFIX}{hour}-p{self.pid}-{n}{SUFFIX}"
            if not path.exists():
                break
            n += 1
        prune(directory, self.bounds.total_max_bytes - self.bounds.file_max_bytes)
        return hour, n, path, 0


def capture_files(directory: Path) -> list[tuple[float, str, int]]:
    """(mtime, name, size) of a directory's capture files, oldest first: by the hour in the name, then modification
    time, then the rotation number (file times are coarse: files rotated within one clock tick share one)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name.startswith(CAPTURE_PREFIX) and entry.name.endswith(SUFFIX):
            try:
                stat = entry.stat()
            except FileNotFoundError:  # pruned by another worker meanwhile
                continue
            found.append((stat.st_mtime, entry.name, stat.st_size))
    return sorted(found, key=_age)


def _age(file: tuple[float, str, int]) -> tuple:
    mtime, name, _ = file
    hour, _, rest = name[len(CAPTURE_PREFIX):-len(SUFFIX)].partition("-")
    number = rest.rpartition("-")[2]
    return hour, mtime, int(number) if number.isdigit() else -1, name


def prune(directory: Path, keep_bytes: int) -> list[str]:
    """Delete the oldest capture files until the rest take at most `keep_bytes`; returns the names deleted."""
    files = capture_files(directory)
    total = sum(size for _, _, size in files)
    deleted = []
    for _, name, size in files:
        if total <= keep_bytes:
            break
        with contextlib.suppress(FileNotFoundError):  # pruned by another worker meanwhile
            os.unlink(directory / name)
        total -= size
        deleted.append(name)
    return deleted


def read_lines(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The complete JSON-object lines of a file from `offset`, and the offset after the last complete line. A line
    that is not a JSON object (a torn or hand-edited file) is skipped."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, offset + end


def read_captures(store_root: Path, model: str, environment: str, since_epoch_s: float = 0.0) -> Iterator[dict]:
    """Captured records of a model and environment with `time` at or after `since_epoch_s`, oldest file first. Files
    last written before `since_epoch_s` are not opened."""
    directory = monitoring_dir(store_root, model, environment)
    for mtime, name, _ in capture_files(directory):
        if mtime < since_epoch_s:
            continue
        records, _ = read_lines(directory / name)
        for record in records:
            when = record.get("time")
            if isinstance(when, int | float) and when >= since_epoch_s and isinstance(record.get("id"), str):
                yield record


class CapturedIds:
    """The ids captured for one model and environment, read incrementally: each call reads only what was appended
    since the last (files are append-only and size-bounded), and forgets pruned files."""

    def __init__(self, store_root: Path, model: str, environment: str) -> None:
        self.directory = monitoring_dir(store_root, model, environment)
        self._files: dict[str, tuple[int, set[str]]] = {}  # name -> (offset read to, ids)

    def refresh(self) -> None:
        present = {name for _, name, _ in capture_files(self.directory)}
        for gone in set(self._files) - present:
            del self._files[gone]
        for name in present:
            offset, ids = self._files.get(name, (0, set()))
            records, offset = read_lines(self.directory / name, offset)
            ids.update(record["id"] for record in records if isinstance(record.get("id"), str))
            self._files[name] = (offset, ids)

    def __contains__(self, request_id: object) -> bool:
        return any(request_id in ids for _, ids in self._files.values())
