"""Writing what a training run produced: the model file is the caller's; metrics, labels and held-out rows are here."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def write_metrics(out: Path, metrics: dict[str, float]) -> Path:
    path = out / "metrics.json"
    path.write_text(json.dumps({key: round(float(value), 6) for key, value in metrics.items()}, indent=2) + "\n",
                    encoding="utf-8")
    return path


def write_labels(out: Path, labels: list[str]) -> Path:
    path = out / "labels.txt"
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return path


def write_rows(out: Path, rows: np.ndarray, name: str = "sample.npy") -> Path:
    path = out / name
    np.save(path, np.asarray(rows, dtype=np.float32))
    return path


def write_holdout(out: Path, rows: np.ndarray, labels: list[str], *, label_column: str,
                  name: str = "holdout.csv") -> Path:
    """The held-out rows with their true labels, as `onnxgate evaluate --data` reads them: a header of the feature
    names the export records (f0, f1, ... for rows without column names) and the label column."""
    path = out / name
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{index}" for index in range(rows.shape[1])] + [label_column])
        for row, label in zip(rows, labels, strict=True):
            writer.writerow([repr(float(value)) for value in row] + [label])
    return path


def output_dir(description: str) -> Path:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", required=True, type=Path, help="directory for the model, metrics.json and samples")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out
