"""Drift windows that add up across uvicorn workers, the way gateway/worker_metrics.py does it for metrics.

Every worker writes its window blocks (gateway/drift_window.py) to `<dir>/drift-<pid>.npz` every `drift_flush_s` and
once more at shutdown; a report merges the worker's own live blocks with every other worker's latest snapshot,
newest blocks first until the window is full. An exited worker's blocks stay: its rows were served (a row window
soon holds newer blocks only, a time window drops them once they are older than it).

The file holds plain int64/float64 arrays read with allow_pickle=False: per window, keyed by (model, environment,
version), the feature and prediction counts of each block (stacked), the rows, and the start and end times; `index`
holds the keys, one row of three strings each. A file that cannot be read is skipped, and so is one written before
windows were kept per environment (an index of (model, version) rows): its blocks cannot be told apart by environment.
"""
from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gateway.drift_window import Block
from modelstore.fileio import atomic_write

log = logging.getLogger("onnxgate.gateway")

SNAPSHOT_GLOB = "drift-*.npz"
UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile)

WindowKey = tuple[str, str, str]  # (model, environment, version)
KEY_FIELDS = 3


class OldKeyFormat(ValueError):
    """A snapshot keyed by (model, version), from before windows were kept per environment."""


def snapshot_path(directory: Path, pid: int) -> Path:
    return directory / f"drift-{pid}.npz"


def encode(windows: Mapping[WindowKey, list[Block]]) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    index = []
    for number, (key, blocks) in enumerate(item for item in windows.items() if item[1]):
        index.append(key)
        arrays[f"f{number}"] = np.stack([block.features for block in blocks])
        arrays[f"p{number}"] = np.stack([block.predictions for block in blocks])
        arrays[f"r{number}"] = np.array([block.rows for block in blocks], dtype=np.int64)
        arrays[f"t{number}"] = np.array([[block.started, block.ended] for block in blocks], dtype=np.float64)
    arrays["index"] = np.array(index, dtype=str).reshape(len(index), KEY_FIELDS)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode(data: bytes) -> dict[WindowKey, list[Block]]:
    windows: dict[WindowKey, list[Block]] = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        index = arrays["index"]
        if index.ndim != 2 or index.shape[1] != KEY_FIELDS:
            raise OldKeyFormat(f"index of shape {index.shape}, not (n, {KEY_FIELDS}): (model, version) keys from before "
                               "windows per environment")
        for number, (model, environment, version) in enumerate(index.tolist()):
            features, predictions = arrays[f"f{number}"], arrays[f"p{number}"]
            rows, times = arrays[f"r{number}"], arrays[f"t{number}"]
            if not (features.dtype == predictions.dtype == rows.dtype == np.int64 and times.dtype == np.float64
                    and len(features) == len(predictions) == len(rows) == len(times) and times.shape[1:] == (2,)):
                raise ValueError(f"blocks of {model} {environment} {version} do not match")
            windows[(str(model), str(environment), str(version))] = [
                Block(features[i], predictions[i], int(rows[i]), float(times[i, 0]), float(times[i, 1]))
                for i in range(len(rows))]
    return windows


def write_snapshot(directory: Path, windows: Mapping[WindowKey, list[Block]], pid: int) -> None:
    """Replace `pid`'s snapshot atomically: a reader sees the previous file or this one, never half of one. Not
    fsynced: it is rewritten every flush."""
    atomic_write(snapshot_path(directory, pid), encode(windows), durable=False)


def read_snapshots(directory: Path, skip_pid: int) -> list[dict[WindowKey, list[Block]]]:
    """Every other worker's latest snapshot (exited workers' too); an unreadable file, or one of the old key format
    (logged at debug level only: a metrics directory kept across an upgrade holds them until they are removed), is
    skipped."""
    skipped = snapshot_path(directory, skip_pid).name
    snapshots = []
    for path in sorted(directory.glob(SNAPSHOT_GLOB)):
        if path.name == skipped:
            continue
        try:
            snapshots.append(decode(path.read_bytes()))
        except OldKeyFormat as exc:
            log.debug("drift snapshot %s skipped: %s", path, exc)
        except UNREADABLE as exc:
            log.warning("drift snapshot %s skipped: %s", path, exc)
    return snapshots
