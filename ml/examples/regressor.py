"""diabetes_regressor: GradientBoostingRegressor on scikit-learn's bundled diabetes data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from ml.examples.artefacts import output_dir, write_metrics, write_rows

NAME = "diabetes_regressor"
SEED = 0


@dataclass(frozen=True)
class TrainedRegressor:
    model: GradientBoostingRegressor
    metrics: dict[str, float]
    held_out: np.ndarray
    training_samples: int


def train(n_estimators: int = 100) -> TrainedRegressor:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED)
    model = GradientBoostingRegressor(n_estimators=n_estimators, max_depth=3, learning_rate=0.05,
                                      random_state=SEED).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "r2": r2_score(y_test, predicted),
        "mae": mean_absolute_error(y_test, predicted),
        "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
    }
    return TrainedRegressor(model=model, metrics=metrics, held_out=x_test, training_samples=len(x_train))


def save(trained: TrainedRegressor, out: Path) -> Path:
    path = out / f"{NAME}.joblib"
    joblib.dump(trained.model, path)
    write_metrics(out, trained.metrics)
    write_rows(out, trained.held_out)
    return path


def main() -> None:
    out = output_dir(__doc__)
    print(save(train(), out))


if __name__ == "__main__":
    main()
