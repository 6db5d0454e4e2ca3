"""Faults stay where they happen, on a real server: a broken version, a broken registry entry or a missing
registry.json on the `iris` side of a two-model gateway never stops `other` from being served and redeployed, and
/health and /v2/health/ready say truthfully what is wrong (store-relative names, never host paths)."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from modelstore.layout import Store
from tests.factories import (
    deploy_unverified,
    deploy_version,
    edit_registry,
    make_store,
    publish_classifier,
    put_non_utf8_byte,
    running_server,
)
from tests.gateway.conftest import gateway_settings

ROW = [[5.1, 3.5, 1.4, 0.2]]
DEADLINE_S = 20.0  # generous: CI shares two cores between the test, the server and its reloads


# -- the faults, each injected into the iris side only --------------------------------------------------------------

Restore = Callable[[], None]


def edit_metadata(store: Store, name: str, version: str, edit: Callable[[dict], None]) -> None:
    path = store.metadata_path(name, version)
    metadata = json.loads(path.read_bytes())
    edit(metadata)
    path.write_text(json.dumps(metadata, indent=2))


def unknown_dtype(store: Store) -> None:
    edit_metadata(store, "iris", "v2.0.0", lambda m: m["inputs"][0].update(dtype="float128x"))
    deploy_unverified(store, "iris", "v2.0.0")


def non_utf8_metadata(store: Store) -> None:
    put_non_utf8_byte(store.metadata_path("iris", "v2.0.0"))
    deploy_unverified(store, "iris", "v2.0.0")


def unreadable_model_file(store: Store) -> None:
    # "Permission denied", simulated: tests may run as root, for whom chmod 000 denies no read. A directory where
    # model.onnx should be fails the read just the same (EISDIR), whoever runs the test.
    path = store.model_path("iris", "v2.0.0")
    path.unlink()
    path.mkdir()
    deploy_unverified(store, "iris", "v2.0.0")


def malformed_date(store: Store) -> None:
    edit_registry(store, lambda r: r["deployments"]["iris"]["production"].update(deployed_at="last Tuesday"))


def invalid_model_name(store: Store) -> None:
    deployment = {"version": "v1.0.0", "deployed_at": "2025-01-31T12:00:00Z"}
    edit_registry(store, lambda r: r["deployments"].update({"Bad Name!": {"production": deployment}}))


def deleted_registry(store: Store) -> Restore:
    saved = store.registry_path.read_bytes()
    store.registry_path.unlink()
    return lambda: store.registry_path.write_bytes(saved)


@dataclass(frozen=True)
class Fault:
    """`inject` breaks something and returns what must be put back before a deploy can be written (or None);
    /health must then list a problem with this model, version and environment, whose reason contains `reason`."""

    inject: Callable[[Store], Restore | None]
    model: str | None
    version: str | None
    environment: str | None
    reason: str

    def reported_in(self, health: dict) -> bool:
        return any((p["model"], p["version"], p["environment"]) == (self.model, self.version, self.environment)
                   and self.reason in p["reason"] for p in health["problems"])


FAULTS = {
    "unknown-dtype": Fault(unknown_dtype, "iris", "v2.0.0", None, "float128x"),
    "non-utf8-metadata": Fault(non_utf8_metadata, "iris", "v2.0.0", None, "iris/v2.0.0/metadata.json"),
    "model-file-unreadable": Fault(unreadable_model_file, "iris", "v2.0.0", None, "iris/v2.0.0/model.onnx"),
    "malformed-date": Fault(malformed_date, "iris", None, "production", "last Tuesday"),
    "invalid-model-name": Fault(invalid_model_name, "Bad Name!", None, None, "invalid model name"),
    "registry-deleted": Fault(deleted_registry, None, None, None, "registry.json is missing"),
}
AT_START_UP = [name for name in FAULTS if name != "registry-deleted"]


# -- helpers --------------------------------------------------------------------------------------------------------

def wait_until(condition: Callable[[], object], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {deadline_s:g} s"
        time.sleep(0.05)


def predicted_version(client: httpx.Client, model: str) -> str | None:
    response = client.post(f"/predict/{model}", json={"inputs": ROW})
    return response.json()["version"] if response.status_code == 200 else None


def served(client: httpx.Client, model: str, version: str) -> None:
    """Assert that `model` answers 200 from `version`."""
    response = client.post(f"/predict/{model}", json={"inputs": ROW})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == version, response.text


def health(client: httpx.Client, host_path: Path) -> dict:
    """GET /health, checked to name no file by its host path."""
    response = client.get("/health")
    assert response.status_code == 200
    assert str(host_path) not in response.text, response.text
    return response.json()


@pytest.fixture
def two_models(tmp_path: Path) -> Store:
    """iris and other, each v1 and v2 published, v1 of each deployed to production."""
    store = make_store(tmp_path / "models")
    for seed, name in enumerate(("iris", "other")):
        publish_classifier(store, name, "v1.0.0", seed=2 * seed + 1)
        publish_classifier(store, name, "v2.0.0", seed=2 * seed + 2)
        deploy_version(store, name, "v1.0.0")
    return store


@contextlib.contextmanager
def gateway(store: Store) -> Iterator[httpx.Client]:
    """A real uvicorn server over the store, polling registry.json every 0.1 s besides watching files."""
    app = create_app(gateway_settings(store, registry_poll_s=0.1), metrics_registry=CollectorRegistry())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


# -- the tests --------------------------------------------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_fault_on_one_side_leaves_the_other_model_served_and_deployable(two_models: Store, tmp_path: Path,
                                                                          fault: Fault):
    store = two_models
    with gateway(store) as client:
        served(client, "other", "v1.0.0")
        served(client, "iris", "v1.0.0")
        assert health(client, tmp_path)["status"] == "ok"

        restore = fault.inject(store)
        wait_until(lambda: fault.reported_in(health(client, tmp_path)), "the fault reported in /health")
        report = health(client, tmp_path)
        assert report["status"] == "degraded", report
        served(client, "other", "v1.0.0")
        served(client, "iris", "v1.0.0")  # the last good version of iris keeps serving
        if fault.model == "iris":  # its new version or its own entry is broken: unhealthy, yet available
            iris = client.get("/health/iris")
            assert iris.status_code == 503, iris.text
            assert iris.json()["available"] is True and fault.reason in iris.json()["error"], iris.text
        if restore is not None:  # the registry is gone: the last good pool serves, and the gateway stays ready
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 200, ready.text
            restore()

        deploy_version(store, "other", "v2.0.0")
        wait_until(lambda: predicted_version(client, "other") == "v2.0.0", "other v2.0.0 served after its deploy")
        served(client, "iris", "v1.0.0")
        if restore is None:  # the fault is still there, and still reported
            report = health(client, tmp_path)
            assert report["status"] == "degraded" and fault.reported_in(report), report


@pytest.mark.e2e
def test_a_deploy_repairs_a_deployment_with_a_malformed_date(two_models: Store, tmp_path: Path):
    store = two_models
    with gateway(store) as client:
        malformed_date(store)
        wait_until(lambda: FAULTS["malformed-date"].reported_in(health(client, tmp_path)), "the fault reported")
        deploy_version(store, "iris", "v2.0.0")
        wait_until(lambda: predicted_version(client, "iris") == "v2.0.0", "iris v2.0.0 served after its deploy")
        wait_until(lambda: health(client, tmp_path)["status"] == "ok", "/health ok again")
        report = health(client, tmp_path)
        assert report["problems"] == [] and report["ready"] is True, report
    deployment = store.registry.read().state
    assert deployment.invalid == [] and deployment.deployments["iris"]["production"].version == "v2.0.0"


@pytest.mark.e2e
@pytest.mark.parametrize("name", AT_START_UP)
def test_a_gateway_started_on_a_broken_store_serves_the_rest(two_models: Store, tmp_path: Path, name: str):
    """Before faults were isolated, each of these made the first load fail and the server refuse to start."""
    fault = FAULTS[name]
    fault.inject(two_models)
    with gateway(two_models) as client:
        served(client, "other", "v1.0.0")
        report = health(client, tmp_path)
        assert report["status"] == "degraded" and fault.reported_in(report), report
        assert report["ready"] is True
        assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.e2e
def test_not_ready_when_the_only_environment_serves_none_of_its_deployments(tmp_path: Path):
    store = make_store(tmp_path / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    deploy_version(store, "iris", "v1.0.0")
    put_non_utf8_byte(store.metadata_path("iris", "v1.0.0"))
    with gateway(store) as client:
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False
        assert ready.json()["reasons"] == ["environment 'production' has deployments but serves none of them"]
        assert str(tmp_path) not in ready.text
        report = health(client, tmp_path)
        assert report["status"] == "degraded" and report["ready"] is False
        [problem] = report["problems"]
        assert (problem["model"], problem["version"]) == ("iris", "v1.0.0")
        assert "iris/v1.0.0/metadata.json" in problem["reason"]
        assert client.post("/predict/iris", json={"inputs": ROW}).status_code == 503
