"""Train the two benchmark models on the breast cancer data. Imports only scikit-learn and joblib, because it also
runs inside MLServer's own virtualenv (`python train_sklearn.py --out DIR`) so its joblib files load there whatever
scikit-learn our venv has; the same seed gives the same model in both."""
from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 0
MODEL_KINDS = ("lr", "rf")


def make_estimator(kind: str) -> ClassifierMixin:
    if kind == "lr":
        # Scaled so lbfgs converges on the raw breast cancer features; still one linear model at serving time.
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
    if kind == "rf":
        return RandomForestClassifier(n_estimators=100, random_state=SEED)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


def train(kind: str) -> ClassifierMixin:
    data = load_breast_cancer()
    return make_estimator(kind).fit(data.data, data.target)


def dump_all(out_dir: Path) -> dict[str, Path]:
    """Train every kind and write `<out_dir>/<kind>/model.joblib`; MLServer's sklearn runtime finds that name."""
    paths: dict[str, Path] = {}
    for kind in MODEL_KINDS:
        target = out_dir / kind / "model.joblib"
        target.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(train(kind), target)
        paths[kind] = target
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description="Train the benchmark models and dump them with joblib.")
    parser.add_argument("--out", type=Path, required=True, help="directory that receives <kind>/model.joblib")
    args = parser.parse_args()
    for kind, path in dump_all(args.out).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
