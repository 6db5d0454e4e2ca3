"""Build everything the benchmark serves, in one work directory:

- `store/`: an onnxgate store with `lr` and `rf` v1.0.0 published and deployed to environment "bench" (gateway);
- `onnx/<kind>.onnx`: the same ONNX files, for the floor;
- `mlserver/<kind>/{model.joblib, model-settings.json}`: the scikit-learn models for MLServer's sklearn runtime,
  dumped by MLServer's own venv (train_sklearn.py) so its scikit-learn can load them.

Run (repo root): python -m bench.make_models --out /tmp/bench-work [--mlserver-python bench/.mlserver-venv/bin/python]
"""
from __future__ import annotations

import argparse
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_breast_cancer

from bench.train_sklearn import MODEL_KINDS, train
from exporters.stats import prediction_stats, reference_stats
from modelstore.deployments import Change, deploy
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata, NodeCompatibility, ParityResult, ReferenceStats, TensorSpec
from modelstore.rollout import start_canary
from modelstore.writer import publish

BENCH_DIR = Path(__file__).resolve().parent
ENVIRONMENT = "bench"
VERSION = "v1.0.0"
CANARY_VERSION = "v1.1.0"
INPUT_NAME = "input"
OPSET = 21
ML_OPSET = 3
PARITY_TOLERANCE = 1e-4
CHANGE = Change(actor="bench", reason="benchmark models")


@dataclass(frozen=True)
class BenchModels:
    store_root: Path
    onnx_paths: dict[str, Path]
    mlserver_repository: Path
    environment: str = ENVIRONMENT


def export_onnx(estimator: ClassifierMixin, features: int) -> bytes:
    onx = to_onnx(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, features]))],
        options={"zipmap": False},
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return onx.SerializeToString()


def check_parity(estimator: ClassifierMixin, model_bytes: bytes, rows: np.ndarray) -> ParityResult:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {INPUT_NAME: rows.astype(np.float32)})
    max_abs_diff = float(np.max(np.abs(probabilities - estimator.predict_proba(rows))))
    agreement = float(np.mean(labels == estimator.predict(rows)))
    return ParityResult(
        passed=max_abs_diff <= PARITY_TOLERANCE and agreement == 1.0, rows=len(rows), synthetic_rows=False,
        max_abs_diff=max_abs_diff, label_agreement=agreement, tolerance=PARITY_TOLERANCE,
        reference=f"scikit-learn {sklearn.__version__}",
    )


def describe(kind: str, estimator: ClassifierMixin, model_bytes: bytes, parity: ParityResult,
             target_names: list[str], samples: int) -> ModelMetadata:
    features = int(estimator.n_features_in_)
    return ModelMetadata(
        name=kind, version=VERSION, framework="scikit-learn", framework_version=sklearn.__version__,
        task="classification", opset=OPSET,
        inputs=[TensorSpec(name=INPUT_NAME, dtype="float32", shape=["batch", features])],
        outputs=[TensorSpec(name="label", dtype="int64", shape=["batch"]),
                 TensorSpec(name="probabilities", dtype="float32", shape=["batch", len(target_names)])],
        model_sha256="", model_size=0,  # sealed by publish from the bytes it writes
        labels=target_names, label_output="label", score_output="probabilities",
        training_samples=samples, parity=parity,
        node_compatibility=NodeCompatibility(compatible=True, opset=OPSET, max_opset=OPSET),
        reference_stats=ReferenceStats(available=False, reason="benchmark model: drift statistics not needed"),
        source=f"bench/train_sklearn.py ({kind}, skl2onnx {skl2onnx.__version__})",
    )


def build_onnx_store(out_dir: Path) -> tuple[Path, dict[str, Path]]:
    data = load_breast_cancer()
    target_names = [str(name) for name in data.target_names]
    store = Store(out_dir / "store")
    onnx_paths: dict[str, Path] = {}
    for kind in MODEL_KINDS:
        estimator = train(kind)
        model_bytes = export_onnx(estimator, data.data.shape[1])
        parity = check_parity(estimator, model_bytes, data.data)
        if not parity.passed:
            raise RuntimeError(f"{kind}: ONNX disagrees with scikit-learn (max abs diff {parity.max_abs_diff})")
        publish(store, describe(kind, estimator, model_bytes, parity, target_names, len(data.data)), model_bytes,
                change=CHANGE, force=True)
        deploy(store, kind, VERSION, ENVIRONMENT, CHANGE)
        onnx_paths[kind] = out_dir / "onnx" / f"{kind}.onnx"
        onnx_paths[kind].parent.mkdir(parents=True, exist_ok=True)
        onnx_paths[kind].write_bytes(model_bytes)
    return store.root, onnx_paths


def build_mlserver_repository(out_dir: Path, mlserver_python: Path) -> Path:
    repository = out_dir / "mlserver"
    subprocess.run([str(mlserver_python), str(BENCH_DIR / "train_sklearn.py"), "--out", str(repository)],
                   check=True, stdout=subprocess.DEVNULL)
    for kind in MODEL_KINDS:
        settings = {"name": kind, "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": VERSION}}
        (repository / kind / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return repository


def build(out_dir: Path, mlserver_python: Path | None) -> BenchModels:
    """Everything the benchmark needs; MLServer's repository only when its venv is given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store_root, onnx_paths = build_onnx_store(out_dir)
    repository = build_mlserver_repository(out_dir, mlserver_python) if mlserver_python else out_dir / "mlserver"
    return BenchModels(store_root, onnx_paths, repository)


def watch_drift(store_root: Path, onnx_path: Path) -> None:
    """Publish `lr` again with reference statistics of its training rows and of its answers on them (what
    `onnxgate export --reference-data` keeps), so that the gateway's live drift counts the rows it serves."""
    store = Store(store_root)
    metadata = store.read_metadata("lr", VERSION)
    data = load_breast_cancer()
    session = ort.InferenceSession(onnx_path.read_bytes(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {INPUT_NAME: data.data.astype(np.float32)}), strict=True))
    prediction, why_not = prediction_stats(outputs, label_output=metadata.label_output,
                                           score_output=metadata.score_output)
    stats = reference_stats(data.data, INPUT_NAME, feature_names=[str(name) for name in data.feature_names])
    stats = stats.model_copy(update={"prediction": prediction, "prediction_reason": why_not})
    publish(store, metadata.model_copy(update={"reference_stats": stats}), onnx_path.read_bytes(), change=CHANGE,
            force=True)



def canary_of(store_root: Path, kind: str, weight: float) -> None:
    """Publish `kind` again as CANARY_VERSION (the same model and metadata, so the same answers) and start it as a
    canary at `weight` percent in the bench environment, with no steps: the gateway splits every request between the
    two versions (at random: the bench sends no routing key), and the rollout state judges both, for as long as the
    benchmark runs."""
    store = Store(store_root)
    metadata = store.read_metadata(kind, VERSION)
    model_bytes = store.model_path(kind, VERSION).read_bytes()
    publish(store, metadata.model_copy(update={"version": CANARY_VERSION}), model_bytes, change=CHANGE, force=True)
    start_canary(store, kind, CANARY_VERSION, ENVIRONMENT, weight, change=CHANGE)


def main() -> int:
    parser = argparse.ArgumentParser(description="Train, export and publish the benchmark models.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mlserver-python", type=Path, default=BENCH_DIR / ".mlserver-venv" / "bin" / "python")
    args = parser.parse_args()
    mlserver_python = args.mlserver_python if args.mlserver_python.exists() else None
    models = build(args.out, mlserver_python)
    print(f"store: {models.store_root} (environment {models.environment!r})")
    for kind, path in models.onnx_paths.items():
        print(f"onnx {kind}: {path}")
    print(f"mlserver repository: {models.mlserver_repository if mlserver_python else '(skipped: no MLServer venv)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

