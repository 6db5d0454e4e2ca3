"""deploy/kubernetes/: both overlays rendered by a real kustomize and every resource validated against the Kubernetes
1.30 schemas (kubernetes-validate's own copies, strict: unknown fields refused, offline); the references between them
resolve; the environment variables are ones the gateway reads and its settings accept; and a real gateway, configured
from the manifest's environment, answers the probes' paths and serves the ops API where the manifest says."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
from prometheus_client import CollectorRegistry

from gateway.admin.tokens import create_token, load_tokens
from gateway.app import create_app
from gateway.settings import GatewaySettings
from modelstore.policy import parse_policy
from tests.deploy.manifests import (
    OVERLAYS,
    gateway_container,
    image_port,
    one,
    rendered,
    secret_templates,
    unknown_variables,
)
from tests.factories import deploy_version, make_store, publish_classifier, running_server

KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests are meant for
DEADLINE_S = 60.0


def config_map(resources: tuple[dict, ...]) -> dict:
    return one(resources, "ConfigMap")


def probes(container: dict) -> dict[str, dict]:
    return {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")}


def container_ports(container: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def resolved_environment(resources: tuple[dict, ...]) -> dict[str, str]:
    """The container's env with ConfigMap references resolved; Secret references get their template's placeholder."""
    data = config_map(resources)["data"]
    secrets = {s["metadata"]["name"]: s["stringData"] for s in secret_templates()}
    values = {}
    for variable in gateway_container(resources)["env"]:
        source = variable.get("valueFrom", {})
        if "configMapKeyRef" in source:
            values[variable["name"]] = data[source["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in source:
            values[variable["name"]] = secrets[source["secretKeyRef"]["name"]][source["secretKeyRef"]["key"]]
        else:
            values[variable["name"]] = variable["value"]
    return values


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_is_valid_kubernetes(overlay: str) -> None:
    resources = rendered(overlay)
    assert sorted(r["kind"] for r in resources) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Service"]
    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert resource["metadata"]["namespace"] == f"onnxgate-{overlay}"


def test_the_secret_templates_are_valid_and_only_placeholders() -> None:
    templates = secret_templates()
    assert {s["metadata"]["name"] for s in templates} == {"onnxgate-database", "onnxgate-object-store",
                                                          "onnxgate-admin-tokens"}
    for secret in templates:
        kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
        for key, value in secret["stringData"].items():
            assert "REPLACE-ME" in value, f"{secret['metadata']['name']}.{key} holds something other than a placeholder"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_serves_its_environment_with_its_own_replicas_and_resources(overlay: str) -> None:
    deployment = one(rendered(overlay), "Deployment")
    container = gateway_container(rendered(overlay))
    assert container["args"] == ["--env", overlay]
    others = [one(rendered(o), "Deployment") for o in OVERLAYS if o != overlay]
    for other in others:
        assert deployment["spec"]["replicas"] != other["spec"]["replicas"]
        assert container["resources"] != other["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert container["image"].endswith(":0.1.0")
    hpa = one(rendered(overlay), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_on_a_read_only_root_filesystem(overlay: str) -> None:
    pod = one(rendered(overlay), "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(rendered(overlay))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    environment = resolved_environment(rendered(overlay))
    writable = {mount["mountPath"] for mount in container["volumeMounts"]
                if any(v["name"] == mount["name"] and "emptyDir" in v for v in pod["volumes"])}
    assert {environment["ONNXGATE_STORE"], environment["ONNXGATE_CACHE_DIR"], "/tmp"} <= writable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_between_resources_resolve(overlay: str) -> None:
    resources = rendered(overlay)
    deployment = one(resources, "Deployment")
    container = gateway_container(resources)
    pod = deployment["spec"]["template"]["spec"]
    configuration = config_map(resources)
    secrets = {s["metadata"]["name"]: s["stringData"] for s in secret_templates()}
    for variable in container["env"]:
        source = variable.get("valueFrom", {})
        if "configMapKeyRef" in source:
            assert source["configMapKeyRef"]["name"] == configuration["metadata"]["name"]
            assert source["configMapKeyRef"]["key"] in configuration["data"], variable["name"]
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["key"] in secrets[source["secretKeyRef"]["name"]], variable["name"]
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] == configuration["metadata"]["name"]
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["subPath"] in configuration["data"]
    service = one(resources, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()
    ports = container_ports(container)
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= set(ports)
    assert ports["http"] == image_port()
    assert ports["admin"] == int(resolved_environment(resources)["ONNXGATE_ADMIN_PORT"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_is_one_the_gateway_reads(overlay: str) -> None:
    names = {variable["name"] for variable in gateway_container(rendered(overlay))["env"]}
    assert not unknown_variables(names), f"nothing in the gateway reads {sorted(unknown_variables(names))}"
    assert unknown_variables({"ONNXGATE_NO_SUCH_SETTING"}) == {"ONNXGATE_NO_SUCH_SETTING"}, "the check can fail"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configuration_is_accepted_by_the_gateway(overlay: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    resources = rendered(overlay)
    data = config_map(resources)["data"]
    parse_policy(data["policy.toml"].encode(), "the ConfigMap's policy.toml")
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(next(s for s in secret_templates()
                           if s["metadata"]["name"] == "onnxgate-admin-tokens")["stringData"]["tokens.toml"])
    assert [t.role for t in load_tokens(tokens).tokens] == ["read"]
    for name, value in resolved_environment(resources).items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert settings.slo.given() == json.loads(data["slo.json"])
    assert str(settings.store) == resolved_environment(resources)["ONNXGATE_STORE"]
    assert str(settings.admin_tokens) == resolved_environment(resources)["ONNXGATE_ADMIN_TOKENS"]


# The shared backends need their servers (tests/shared_backends and tests/s3 start them): left out of the probe test.
SHARED_BACKEND_VARIABLES = frozenset({"ONNXGATE_REGISTRY_URL", "ONNXGATE_ARTIFACTS_URL"})


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_gateway_configured_as_the_manifest_says_answers_the_probes(overlay: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest's own settings (less the shared backends, which need their servers: their tests start them), a
    real store and a real gateway: each probe's path answers 200, and the ops API answers on its own port."""
    resources = rendered(overlay)
    for name, value in resolved_environment(resources).items():
        if name not in SHARED_BACKEND_VARIABLES:
            monkeypatch.setenv(name, value)
    store = make_store(tmp_path / "models")
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    deploy_version(store, "iris", "v1.0.0", overlay)
    secret = create_token(tmp_path / "tokens.toml", "prober", "read")
    # a local store, tokens file and free ports in place of the pod's paths and fixed ports
    settings = GatewaySettings(store=store.root, environments=[overlay], admin_tokens=tmp_path / "tokens.toml",
                               admin_port=0)
    container = gateway_container(resources)
    app = create_app(settings, metrics_registry=CollectorRegistry())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        for kind, probe in probes(container).items():
            assert probe["port"] == "http", kind
            answer = client.get(probe["path"])
            assert answer.status_code == 200, (kind, probe["path"], answer.text)
        admin = httpx.get(f"http://127.0.0.1:{app.state.admin_port}/admin/v1/status", timeout=DEADLINE_S,
                          headers={"Authorization": f"Bearer {secret}"})
        assert admin.status_code == 200, admin.text
        assert admin.json()["served_environments"] == [overlay]
        assert client.get("/no/such/probe").status_code == 404, "a wrong probe path would fail"
