"""schemathesis against a live gateway, from the document it serves at /openapi.json: every operation, with data that
fits the document (positive) and data that does not (negative). Checks: never a 5xx, every status documented, the
documented content type, and bodies conforming to their documented schema.

Bounded: a fixed number of examples per operation and mode, derandomized, no example database. schemathesis's negative
bodies still differ between runs (not every draw goes through hypothesis): whatever they find must fail here."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.openapi import openapi_document
from tests.adversarial.conftest import DEADLINE_S, LiveGateway, count_answer, count_cases

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
SERVED_EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}  # per served model: ~150 ms a case
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# (path, method, mode): negative data only where an operation takes any (parameters or a body)
CASES = sorted((path, method.upper(), mode) for path, item in openapi_document()["paths"].items()
               for method, operation in item.items() for mode in EXAMPLES
               if mode == GenerationMode.POSITIVE or operation["parameters"] or "requestBody" in operation)
# Random model names are almost all unknown (404): the data plane is also run on the served models, so that generated
# bodies reach the signature checks and the models (iris: float32[batch, 4]; echo: one input of every element type).
DATA_PLANE = [(path, method, mode, {"model": model, **({"version": "v1.0.0"} if "{version}" in path else {})})
              for path, method, mode in CASES if method == "POST"
              for model in (["iris"] if "{version}" in path else ["iris", "echo"])]


@pytest.fixture(scope="module")
def served_schema(live_gateway: LiveGateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_gateway.url}/openapi.json", timeout=DEADLINE_S)


@pytest.mark.e2e
@pytest.mark.parametrize(("path", "method", "mode", "path_parameters"),
                         [(*case, None) for case in CASES] + DATA_PLANE, ids=str)
def test_operation(served_schema: schemathesis.BaseSchema, live_gateway: LiveGateway, path: str, method: str,
                   mode: GenerationMode, path_parameters: dict | None) -> None:
    operation = served_schema[path][method]
    session = requests.Session()
    label = f"schemathesis {mode} {method} {path}" + (f" {path_parameters}" if path_parameters else "")

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(max_examples=(SERVED_EXAMPLES if path_parameters else EXAMPLES)[mode], derandomize=True, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        count_cases(label)
        response = case.call(base_url=live_gateway.url, session=session, timeout=DEADLINE_S)
        count_answer(f"{response.status_code} (schemathesis)")
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    finally:
        session.close()
    with live_gateway.client() as client:
        assert client.get("/health").status_code == 200
