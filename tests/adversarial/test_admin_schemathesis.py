"""schemathesis against the ops API of a live gateway, from the document it serves at /openapi.json, with a bearer
token: every admin operation with data that fits the document (positive) and data that does not (negative), on random
names and on the store's real ones (so that generated bodies reach the transitions and the gates). Checks: never a
5xx, every status documented, the documented content type, bodies conforming to their schema. Negative cases include
requests without the token (schemathesis knows the bearer scheme): 401. Run with a deploy token (approvals: 403) and
an admin token. The gateway has a store of its own: generated changes (deploys, canaries, restores) are made for
real."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from prometheus_client import CollectorRegistry
from schemathesis import GenerationMode

from gateway.admin.tokens import create_token
from gateway.app import create_app
from gateway.openapi import openapi_document
from retrain.ops import RetrainOperations
from tests.adversarial.conftest import DEADLINE_S, LiveGateway, build_served_store, count_answer, count_cases
from tests.adversarial.test_schemathesis import CHECKS
from tests.factories import publish_classifier, running_server
from tests.gateway.conftest import gateway_settings
from tests.retrain.conftest import write_config

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
REAL_EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}
REAL_NAMES = {"model": "iris", "environment": "production", "version": "v2.0.0", "snapshot_id": "1", "file": "model.onnx"}
ADMIN = [(path, method.upper(), operation) for path, item in openapi_document(admin=True)["paths"].items()
         if path.startswith("/admin/") for method, operation in item.items()]
CASES = sorted((path, method, mode) for path, method, operation in ADMIN for mode in EXAMPLES
               if mode == GenerationMode.POSITIVE or operation["parameters"] or "requestBody" in operation)
REAL = [(path, method, mode, {name: value for name, value in REAL_NAMES.items() if f"{{{name}}}" in path})
        for path, method, mode in CASES if "{" in path]
ROLES = ("deploy", "admin")


@pytest.fixture(scope="module")
def ops_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveGateway, dict[str, str]]]:
    root = tmp_path_factory.mktemp("admin-schemathesis")
    store, weights = build_served_store(root / "models")
    publish_classifier(store, "iris", "v3.0.0", seed=3)
    (root / "work" / "data").mkdir(parents=True)  # generated retrain runs start real jobs, which fail at once
    write_config(store, root / "work", command='{python} -c "import sys; sys.exit(3)"', name="iris")
    tokens = root / "tokens.toml"
    secrets = {role: create_token(tokens, f"fuzz-{role}", role) for role in ROLES}
    app = create_app(gateway_settings(store, "production", "staging", admin_tokens=tokens),
                     metrics_registry=CollectorRegistry(), retraining=RetrainOperations(store.root))
    with running_server(app) as url:
        yield LiveGateway(url, store, weights), secrets


@pytest.fixture(scope="module")
def admin_schema(ops_live: tuple[LiveGateway, dict[str, str]]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{ops_live[0].url}/openapi.json", timeout=DEADLINE_S)


@pytest.mark.e2e
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "method", "mode", "path_parameters"),
                         [(*case, None) for case in CASES] + REAL, ids=str)
def test_admin_operation(admin_schema: schemathesis.BaseSchema, ops_live: tuple[LiveGateway, dict[str, str]],
                         path: str, method: str, mode: GenerationMode, path_parameters: dict | None, role: str) -> None:
    live, secrets = ops_live
    operation = admin_schema[path][method]
    session = requests.Session()
    headers = {"Authorization": f"Bearer {secrets[role]}"}
    label = f"schemathesis {role} {mode} {method} {path}" + (f" {path_parameters}" if path_parameters else "")

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=(REAL_EXAMPLES if path_parameters else EXAMPLES)[mode], derandomize=True, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        count_cases(label)
        response = case.call(base_url=live.url, session=session, headers=headers, timeout=DEADLINE_S)
        count_answer(f"{response.status_code} (schemathesis, ops API)")
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    finally:
        session.close()
    with live.client() as client:
        assert client.get("/health").status_code == 200
