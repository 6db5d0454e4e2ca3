"""Ops API fixtures: a tokens file with one token per role (made by the library `onnxgate token create` calls), and a
real gateway over a real store, served by uvicorn on a loopback port, with its ops API mounted and on its own port."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.admin.tokens import ROLES, create_token
from gateway.app import create_app
from modelstore.layout import Store
from retrain.ops import RetrainOperations
from tests.factories import deploy_version, make_store, publish_classifier, running_server
from tests.gateway.conftest import gateway_settings

DEADLINE_S = 60.0


def make_tokens(path: Path, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """One token per role, named `<role>-bot`: role -> secret."""
    return {role: create_token(path, f"{role}-bot", role) for role in roles}


@dataclass(frozen=True)
class OpsGateway:
    url: str
    admin_url: str
    store: Store
    secrets: dict[str, str]

    def client(self, role: str | None = None, *, admin_port: bool = False) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.secrets[role]}"} if role else {}
        return httpx.Client(base_url=self.admin_url if admin_port else self.url, headers=headers, timeout=DEADLINE_S)


def build_ops_store(root: Path, store: Store | None = None) -> Store:
    """iris v1.0.0 stable in production and staging, v2.0.0 and v3.0.0 registered (in `store`, default: a file store
    at `root`)."""
    store = store if store is not None else make_store(root)
    for seed, version in enumerate(("v1.0.0", "v2.0.0", "v3.0.0"), start=1):
        publish_classifier(store, "iris", version, seed=seed)
    deploy_version(store, "iris", "v1.0.0", "production")
    deploy_version(store, "iris", "v1.0.0", "staging")
    return store


@contextlib.contextmanager
def ops_gateway(root: Path, store: Store | None = None, **overrides: object) -> Iterator[OpsGateway]:
    """A gateway over `store` (default: build_ops_store) serving production and staging, with the ops API on its own
    port too, and retraining as `onnxgate serve` provides it; its tokens file holds one token per role."""
    store = store if store is not None else build_ops_store(root / "models")
    tokens = root / "tokens.toml"
    secrets = make_tokens(tokens)
    settings = gateway_settings(store, "production", "staging", admin_tokens=tokens, admin_port=0, **overrides)
    app = create_app(settings, metrics_registry=CollectorRegistry(), retraining=RetrainOperations(store.root))
    with running_server(app) as url:
        admin_url = f"http://127.0.0.1:{app.state.admin_port}"
        yield OpsGateway(url, admin_url, store, secrets)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsGateway]:
    with ops_gateway(tmp_path_factory.mktemp("ops")) as gateway:
        yield gateway


def audit_entries(store: Store, action: str | None = None) -> list[dict]:
    return [e for e in store.registry.audit.entries() if action is None or e["action"] == action]
