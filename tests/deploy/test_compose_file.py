"""docker-compose.yml: valid against the compose specification's schema (the copy check-jsonschema ships, offline),
and consistent: the gateways reach the PostgreSQL and MinIO services with the credentials those are started with,
every variable they set is one the gateway reads and accepts, and every file they mount is in the repository."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.settings import GatewaySettings
from tests.deploy.manifests import COMPOSE_FILE, REPO, image_port, unknown_variables

GATEWAYS = ("gateway-production", "gateway-staging")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # resolves the gateways' `<<: *gateway` merge


def check_against_compose_spec(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_against_compose_spec(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = compose()
    broken["services"]["gateway-staging"]["restart"] = ["always"]  # a list where the spec wants a string
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(broken))
    assert check_against_compose_spec(tmp_path / "compose.yml").returncode != 0, "the check can fail"


def test_the_gateways_reach_postgres_and_minio_with_their_credentials() -> None:
    services = compose()["services"]
    database = services["postgres"]["environment"]
    minio = services["minio"]["environment"]
    bucket_command = " ".join(services["minio-bucket"]["command"])
    for name in GATEWAYS:
        environment = services[name]["environment"]
        registry = urlsplit(environment["ONNXGATE_REGISTRY_URL"])
        assert (registry.scheme, registry.hostname, registry.port) == ("postgresql", "postgres", 5432)
        assert (registry.username, registry.password, registry.path) == (
            database["POSTGRES_USER"], database["POSTGRES_PASSWORD"], f"/{database['POSTGRES_DB']}")
        artifacts = urlsplit(environment["ONNXGATE_ARTIFACTS_URL"])
        assert artifacts.scheme == "s3" and f"local/{artifacts.hostname}" in bucket_command
        assert urlsplit(environment["AWS_ENDPOINT_URL"]).hostname == "minio"
        assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == (
            minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
        assert all(port.endswith(f":{image_port()}") for port in services[name]["ports"])


@pytest.mark.parametrize("service", GATEWAYS)
def test_the_gateways_variables_are_read_and_accepted(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = compose()["services"][service]["environment"]
    assert not unknown_variables(set(environment)), f"nothing in the gateway reads {unknown_variables(set(environment))}"
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    settings = GatewaySettings()
    assert settings.slo.given()["max_error_rate"] == 0.01


def test_every_mounted_file_is_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{name} mounts {source}, which does not exist"
