"""Publish every fixture into OUTDIR/store, package it, run its requests through Python onnxruntime, and write the
answers (formatted as the gateway formats them) with the tokenizer and routing vectors into OUTDIR/vectors.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from modelstore.deployments import deploy
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata
from modelstore.outputs import format_outputs
from modelstore.rollout import start_canary
from modelstore.versions import sort_versions
from modelstore.writer import publish
from tests.node_fixtures.routing import routing_vectors
from tests.node_fixtures.tabular import Fixture, house_regressor, iris_classifier, multi_output
from tests.node_fixtures.text import text_classifier, tokenizer_vectors

# Extra versions of the classifier: numeric ordering (0.10 after 0.9) and a pre-release before its release.
IRIS_OLDER_VERSIONS = ["v0.9.0", "v0.10.0", "v1.0.0-rc.1"]
VERSION_ORDER_SAMPLE = ["v1.0.0", "v1.0.0-rc.1", "v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta", "v1.0.0-beta.2",
                        "v1.0.0-beta.11", "v1.0.0-rc.1", "v0.10.0", "v0.9.0", "v2.0.0", "v1.10.0", "v1.2.0", "1.1.0",
                        "v1.0.0-1", "v1.0.0-2a", "v10.0.0", "not-a-version"]


def build_fixtures(outdir: Path) -> Path:
    outdir = Path(outdir)
    store = Store(outdir / "store")
    text_fixture, tokenizer = text_classifier()
    fixtures = [iris_classifier(), house_regressor(), multi_output(), text_fixture]
    iris = fixtures[0]
    for version in IRIS_OLDER_VERSIONS:
        publish(store, iris.metadata.model_copy(update={"version": version}), iris.model_bytes)
    models = {}
    for fixture in fixtures:
        sealed = publish(store, fixture.metadata, fixture.model_bytes, fixture.extra_files)
        models[sealed.name] = {
            "name": sealed.name,
            "version": sealed.version,
            "label_outputs": [sealed.label_output] if sealed.label_output and sealed.labels else [],
            "cases": [{"request": request, "expected": run_python(sealed, fixture, tokenizer, request)}
                      for request in fixture.requests],
        }
    deploy_fixtures(store)
    packages = build_packages(store, outdir / "packages", [(m["name"], m["version"]) for m in models.values()])
    vectors = {
        "store": "store",
        "onnxruntime": onnxruntime.__version__,
        "models": models,
        "packages": packages,
        "versions": {"iris": store.list_versions("iris"), "sample": VERSION_ORDER_SAMPLE,
                     "sample_sorted": sort_versions(VERSION_ORDER_SAMPLE)},
        "deployments": {"iris": {"production": "v1.0.0", "staging": "v0.9.0"}},
        "tokenizer": {"model": text_fixture.metadata.name, "cases": tokenizer_vectors(tokenizer)},
        "routing": routing_vectors(),
    }
    vectors_path = outdir / "vectors.json"
    vectors_path.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return vectors_path


def run_python(metadata: ModelMetadata, fixture: Fixture, tokenizer: Tokenizer, request: dict | str) -> dict:
    """What the gateway answers for this request body: Python onnxruntime, formatted by modelstore.outputs."""
    session = onnxruntime.InferenceSession(fixture.model_bytes, providers=["CPUExecutionProvider"])
    if metadata.tokenizer is not None:
        texts = [request] if isinstance(request, str) else request["text"]
        encodings = tokenizer.encode_batch(texts)
        feeds = {metadata.tokenizer.input_ids: np.array([e.ids for e in encodings], dtype=np.int64)}
        if metadata.tokenizer.attention_mask:
            feeds[metadata.tokenizer.attention_mask] = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    else:
        given = request["inputs"]
        named = given if isinstance(given, dict) else {metadata.inputs[0].name: given}
        feeds = {spec.name: np.asarray(named[spec.name], dtype=spec.dtype) for spec in metadata.inputs}
    names = [spec.name for spec in metadata.outputs]
    raw = dict(zip(names, session.run(names, feeds), strict=True))
    return format_outputs(metadata, raw)


def deploy_fixtures(store: Store) -> None:
    deploy(store, "iris", "v0.9.0", "staging")
    deploy(store, "iris", "v1.0.0", "production")
    start_canary(store, "iris", "v0.10.0", "production", 12.5)


def build_packages(store: Store, out_dir: Path, versions: list[tuple[str, str]]) -> dict:
    """Archives for every fixture (paths relative to OUTDIR), or a note saying why there are none."""
    try:
        from modelstore.package import build_package
    except ImportError as exc:
        return {"available": False, "reason": f"modelstore.package.build_package is missing: {exc}"}
    built = {name: build_package(store, name, version, out_dir).name for name, version in versions}
    return {"available": True, "files": {name: f"{out_dir.name}/{file_name}" for name, file_name in built.items()}}
