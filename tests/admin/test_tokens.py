"""The tokens file: `onnxgate token create` (a real process) prints a secret once and keeps only its SHA-256, in a
0600 file, TOML or JSON; a file with a plaintext secret, an unknown role or a repeated name is refused when the
gateway starts (create_app, and `onnxgate serve` before it starts anything)."""
from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.admin.tokens import InvalidTokens, create_token, load_tokens
from gateway.app import create_app
from tests.factories import make_store
from tests.gateway.conftest import gateway_settings

DIGEST = "a" * 64


def onnxgate(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxgate", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_token_create_prints_the_secret_once_and_stores_its_hash(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "conf" / f"tokens{suffix}"
    first = onnxgate("token", "create", "ci", "--role", "deploy", "--tokens", str(path))
    assert first.returncode == 0, first.stderr
    secret = first.stdout.splitlines()[0]
    second = onnxgate("token", "create", "alice", "--role", "approve", "--tokens", str(path), "--json")
    assert second.returncode == 0, second.stderr
    alice_secret = json.loads(second.stdout)["secret"]
    text = path.read_text()
    assert secret not in text and alice_secret not in text
    raw = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    assert raw == {"tokens": [
        {"name": "ci", "sha256": hashlib.sha256(secret.encode()).hexdigest(), "role": "deploy"},
        {"name": "alice", "sha256": hashlib.sha256(alice_secret.encode()).hexdigest(), "role": "approve"}]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [t.name for t in load_tokens(path).tokens] == ["ci", "alice"]


def test_token_create_refuses_a_repeated_name_and_an_unknown_role(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    create_token(path, "ci", "read")
    before = path.read_bytes()
    repeated = onnxgate("token", "create", "ci", "--role", "admin", "--tokens", str(path))
    assert repeated.returncode == 2 and "already has a token named 'ci'" in repeated.stderr
    unknown = onnxgate("token", "create", "bob", "--role", "root", "--tokens", str(path))
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    assert path.read_bytes() == before


BAD_FILES = {
    "plaintext": ('[[tokens]]\nname = "ci"\nsecret = "hunter2"\nrole = "read"\n', "plaintext secret"),
    "secret as hash": ('[[tokens]]\nname = "ci"\nsha256 = "hunter2"\nrole = "read"\n', "not the secret itself"),
    "unknown role": (f'[[tokens]]\nname = "ci"\nsha256 = "{DIGEST}"\nrole = "root"\n', "role"),
    "repeated name": (f'[[tokens]]\nname = "ci"\nsha256 = "{DIGEST}"\nrole = "read"\n'
                      f'[[tokens]]\nname = "ci"\nsha256 = "{"b" * 64}"\nrole = "read"\n', "same name"),
    "not toml": ("tokens = [", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_tokens_file_is_refused_at_start_up(tmp_path: Path, case: str) -> None:
    text, message = BAD_FILES[case]
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    store = make_store(tmp_path / "models")
    with pytest.raises(InvalidTokens, match=message):
        create_app(gateway_settings(store, admin_tokens=path), metrics_registry=CollectorRegistry())
    served = onnxgate("serve", "--env", "production", "--port", "0", "--admin-tokens", str(path),
                      "--store", str(store.root))
    assert served.returncode == 2, served.stderr
    assert message in served.stderr and "Traceback" not in served.stderr


def test_serve_refuses_an_admin_port_without_tokens(tmp_path: Path) -> None:
    served = onnxgate("serve", "--env", "production", "--port", "0", "--admin-port", "9999",
                      "--store", str(make_store(tmp_path / "models").root))
    assert served.returncode == 2 and "--admin-port needs --admin-tokens" in served.stderr


def test_concurrent_token_creates_each_add_their_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    names = [f"bot{i}" for i in range(6)]
    processes = [subprocess.Popen([sys.executable, "-m", "onnxgate", "token", "create", name, "--role", "read",
                                   "--tokens", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in names]
    secrets = {}
    for name, process in zip(names, processes, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        secrets[name] = out.splitlines()[0]
    stored = {token.name: token.sha256 for token in load_tokens(path).tokens}
    assert stored == {name: hashlib.sha256(secret.encode()).hexdigest() for name, secret in secrets.items()}
