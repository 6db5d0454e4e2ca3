"""/predict through the real app: answers computed independently with numpy from the models' weights."""
from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from modelstore.layout import Store
from tests.factories import IRIS_LABELS, TEXT_LABELS, classifier_expected, text_expected

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [-1.0, 2.0, 0.5, -3.0]], dtype=np.float32)


def test_single_input_model_answers_with_labels_and_probabilities(client: TestClient, served_store: tuple[Store, dict]):
    _, weights = served_store
    response = client.post("/predict/iris", json={"inputs": ROWS.tolist()})
    assert response.status_code == 200
    body = response.json()
    labels, probabilities = classifier_expected(weights["v1.0.0"], ROWS)
    assert body["model"] == "iris" and body["version"] == "v1.0.0" and body["environment"] == "production"
    assert response.headers["X-Model-Version"] == "v1.0.0"
    assert body["outputs"]["label"] == [IRIS_LABELS[i] for i in labels]
    np.testing.assert_allclose(body["outputs"]["probabilities"], probabilities, rtol=1e-5)


def test_environment_header_selects_that_environments_version(client: TestClient, served_store: tuple[Store, dict]):
    _, weights = served_store
    response = client.post("/predict/iris", json={"inputs": ROWS.tolist()}, headers={"X-Environment": "staging"})
    assert response.status_code == 200
    assert response.json()["version"] == "v2.0.0" and response.json()["environment"] == "staging"
    labels, probabilities = classifier_expected(weights["v2.0.0"], ROWS)
    np.testing.assert_allclose(response.json()["outputs"]["probabilities"], probabilities, rtol=1e-5)


def test_version_query_pins_a_version(client: TestClient, served_store: tuple[Store, dict]):
    _, weights = served_store
    response = client.post("/predict/iris?version=v2.0.0", json={"inputs": ROWS.tolist()})
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == "v2.0.0"
    _, probabilities = classifier_expected(weights["v2.0.0"], ROWS)
    np.testing.assert_allclose(response.json()["outputs"]["probabilities"], probabilities, rtol=1e-5)


def test_pinned_version_that_is_registered_but_not_deployed_is_refused(client: TestClient):
    """Unless ONNXGATE_PIN_ANY_VERSION (tests/gateway/test_pinned.py)."""
    response = client.post("/predict/unused?version=v1.0.0", json={"inputs": ROWS.tolist()})
    assert response.status_code == 403 and "not deployed" in response.json()["error"]


def test_named_inputs_of_different_dtypes(client: TestClient):
    a, b = [[0.5, 1.5], [2.0, -1.0]], [[1, 2], [3, 4]]
    response = client.post("/predict/pair", json={"inputs": {"a": a, "b": b}})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["outputs"]["sum"], np.array(a, np.float32) + np.array(b, np.float32))


def test_text_model_tokenizes_raw_text(client: TestClient):
    texts = ["the movie was great", "awful and bad", "poor poor good", "unknown words only " * 5]
    response = client.post("/predict/sentiment", json={"text": texts})
    assert response.status_code == 200
    assert response.json()["outputs"]["label"] == [TEXT_LABELS[i] for i in text_expected(texts, max_length=8)]


@pytest.mark.parametrize("rows", [1, 100])
def test_batch_sizes_up_to_the_limit(client: TestClient, rows: int):
    batch = np.random.default_rng(rows).normal(size=(rows, 4)).round(3).tolist()
    response = client.post("/predict/iris", json={"inputs": batch})
    assert response.status_code == 200 and len(response.json()["outputs"]["label"]) == rows
