"""cancer_classifier: Pipeline(StandardScaler, LogisticRegression) on scikit-learn's bundled breast cancer data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ml.examples.artefacts import output_dir, write_holdout, write_labels, write_metrics, write_rows

NAME = "cancer_classifier"
SEED = 0
LABEL_COLUMN = "diagnosis"


@dataclass(frozen=True)
class TrainedTabular:
    model: Pipeline
    labels: list[str]
    metrics: dict[str, float]
    held_out: np.ndarray
    held_out_labels: list[str]
    training_samples: int


def train() -> TrainedTabular:
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.25, random_state=SEED,
                                                        stratify=data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "precision": precision_score(y_test, predicted),
        "recall": recall_score(y_test, predicted),
        "f1": f1_score(y_test, predicted),
        "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
    }
    labels = [str(name) for name in data.target_names]
    return TrainedTabular(model=model, labels=labels, metrics=metrics, held_out=x_test,
                          held_out_labels=[labels[target] for target in y_test], training_samples=len(x_train))


def save(trained: TrainedTabular, out: Path) -> Path:
    path = out / f"{NAME}.joblib"
    joblib.dump(trained.model, path)
    write_metrics(out, trained.metrics)
    write_labels(out, trained.labels)
    write_rows(out, trained.held_out)
    write_holdout(out, trained.held_out, trained.held_out_labels, label_column=LABEL_COLUMN)
    return path


def main() -> None:
    out = output_dir(__doc__)
    print(save(train(), out))


if __name__ == "__main__":
    main()
