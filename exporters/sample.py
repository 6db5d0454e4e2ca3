"""The rows a model is checked and described with: read from .npy/.csv/.json/.txt, or drawn from the signature."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.errors import ExportError

SYNTHETIC_ROWS = 64
SYNTHETIC_SEED = 0


@dataclass(frozen=True)
class Sample:
    """Numeric rows (first axis = rows) or texts, and feature names when the file had a header."""

    rows: np.ndarray | None = None
    texts: list[str] | None = None
    feature_names: list[str] | None = None


def load_sample(path: str | Path) -> Sample:
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return Sample(rows=np.load(path, allow_pickle=False))
        if suffix == ".csv":
            return _load_csv(path)
        if suffix == ".json":
            return _from_json(json.loads(path.read_text(encoding="utf-8")), path)
        if suffix == ".txt":
            return Sample(texts=[line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read sample rows from {path}: {exc}") from None
    raise ExportError(f"sample file {path} must be .npy, .csv, .json (rows or a list of texts) or .txt (one text "
                      f"a line)")


def _load_csv(path: Path) -> Sample:
    with open(path, newline="", encoding="utf-8") as handle:
        lines = [row for row in csv.reader(handle) if row]
    if not lines:
        raise ValueError("the file is empty")
    header = None
    if not _is_numeric(lines[0]):
        header, lines = [name.strip() for name in lines[0]], lines[1:]
    return Sample(rows=np.array([[float(cell) for cell in row] for row in lines], dtype=np.float64),
                  feature_names=header)


def _is_numeric(cells: list[str]) -> bool:
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def _from_json(payload: object, path: Path) -> Sample:
    if isinstance(payload, dict):
        payload = payload.get("text", payload.get("rows"))
    if isinstance(payload, list) and payload and all(isinstance(item, str) for item in payload):
        return Sample(texts=list(payload))
    if isinstance(payload, list) and payload:
        return Sample(rows=np.asarray(payload, dtype=np.float64))
    raise ValueError("expected a non-empty list of rows or of texts (or {'rows': [...]} / {'text': [...]})")


def synthetic_rows(row_shape: tuple[int, ...], count: int = SYNTHETIC_ROWS, seed: int = SYNTHETIC_SEED) -> np.ndarray:
    """Standard-normal float32 rows: enough to compare two implementations of the same function."""
    return np.random.default_rng(seed).standard_normal((count, *row_shape)).astype(np.float32)


def dataset_sha256(rows: np.ndarray | None = None, texts: list[str] | None = None) -> str | None:
    """sha256 of the rows as contiguous float32 bytes, or of the texts as UTF-8 JSON."""
    if rows is not None:
        return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float32).tobytes()).hexdigest()
    if texts is not None:
        return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
    return None
