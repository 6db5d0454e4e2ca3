"""A training command for `onnxgate retrain`: fit a classifier on a data window and write what the export needs.

    python ml/examples/retrain_tabular.py --data WINDOW.csv --label COLUMN --out DIR [--keep f1,f3] [--seed 0]

WINDOW.csv: feature columns and a label column, with a header. Writes to DIR: model.joblib (StandardScaler +
LogisticRegression), labels.txt (class names by class id), sample.npy (rows for parity), reference.csv (the training
rows, for the drift statistics), metrics.json (accuracy on a quarter of the window held out). `--keep` trains on those
columns only (the others are zeroed: the model still takes every column), which makes a deliberately weaker model.
Standalone on purpose (numpy, scikit-learn, joblib): retrain runs it as any team's script would be run.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def read_window(path: Path, label: str) -> tuple[list[str], np.ndarray, list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], [row for row in rows[1:] if row]
    at = header.index(label)
    names = [name for index, name in enumerate(header) if index != at]
    x = np.array([[float(value) for index, value in enumerate(row) if index != at] for row in body])
    return names, x, [row[at] for row in body]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", help="comma-separated columns to learn from (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names, x, labels = read_window(args.data, args.label)
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=args.seed, stratify=y)
    x_fit = x_train
    if args.keep:  # zeroed while fitting, the other columns get no weight: the model ignores them when it answers
        kept = [names.index(name.strip()) for name in args.keep.split(",")]
        mask = np.zeros(x.shape[1], dtype=bool)
        mask[kept] = True
        x_fit = np.where(mask, x_train, 0.0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x_fit, y_train)
    args.out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.out / "model.joblib")
    (args.out / "labels.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    np.save(args.out / "sample.npy", x_test.astype(np.float32))
    with open(args.out / "reference.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows([repr(float(value)) for value in row] for row in x_train)
    accuracy = float((model.predict(x_test) == y_test).mean())
    (args.out / "metrics.json").write_text(json.dumps({"accuracy": accuracy}) + "\n", encoding="utf-8")
    print(f"trained on {len(x_train)} rows of {args.data}: accuracy {accuracy:.4f} on {len(x_test)} held out")


if __name__ == "__main__":
    main()
