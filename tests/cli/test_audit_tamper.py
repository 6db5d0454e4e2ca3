"""`onnxgate audit verify` against a log tampered with as an attacker would, after a real history made by the CLI; the
signed head; and the modes of the files operators share with the gateway."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelstore.layout import Store
from modelstore.writer import publish
from tests.modelstore.conftest import tiny_classifier_onnx, tiny_metadata

Lines = list[bytes]


def onnxgate(*args: str, store: Store | None = None, audit_key: Path | None = None,
             umask: int = -1) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "onnxgate", *args]
    if store is not None:
        command += ["--store", str(store.root)]
    env = {key: value for key, value in os.environ.items() if key != "ONNXGATE_AUDIT_KEY"}
    if audit_key is not None:
        env["ONNXGATE_AUDIT_KEY"] = str(audit_key)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, umask=umask)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def make_history(store: Store, audit_key: Path | None = None) -> None:
    """Deploy, canary, promote, rollback: each a real `onnxgate` process."""
    for args in (["deploy", "tiny", "v1.0.0", "--env", "prod"], ["canary", "tiny", "v1.1.0", "--env", "prod", "--weight",
                 "10"], ["promote", "tiny", "--env", "prod"], ["rollback", "tiny", "--env", "prod"]):
        ok(onnxgate(*args, store=store, audit_key=audit_key))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Store:
    """A store after a real history, built once; tests tamper with copies (`copy_of`)."""
    store = Store(tmp_path_factory.mktemp("history") / "store")
    store.root.mkdir(parents=True)
    for index, version in enumerate(("v1.0.0", "v1.1.0")):
        publish(store, tiny_metadata("tiny", version), tiny_classifier_onnx(seed=index))
    make_history(store)
    return store


def copy_of(store: Store, tmp_path: Path) -> Store:
    shutil.copytree(store.root, tmp_path / "copy")
    return Store(tmp_path / "copy")


def rechain(lines: Lines, start: int) -> Lines:
    """What an attacker who knows the format does after an edit: recompute every prev_sha256 from `start` on."""
    lines = list(lines)
    for index in range(max(start, 1), len(lines)):
        entry = json.loads(lines[index])
        entry["prev_sha256"] = hashlib.sha256(lines[index - 1].rstrip(b"\n")).hexdigest()
        lines[index] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    if start == 0 and lines:
        entry = json.loads(lines[0])
        entry["prev_sha256"] = "0" * 64
        lines[0] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        return rechain(lines, 1)
    return lines


def set_prev(lines: Lines, index: int, value: object) -> Lines:
    entry = json.loads(lines[index])
    entry["prev_sha256"] = value
    return [*lines[:index], json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n",
            *lines[index + 1:]]


def edit_actor(lines: Lines, index: int) -> Lines:
    entry = json.loads(lines[index])
    entry["actor"] = "mallory"
    return [*lines[:index], json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n",
            *lines[index + 1:]]


# (tampering, the first bad line as a function of the original line count, what the message says)
TAMPERINGS: dict[str, tuple[Callable[[Lines], Lines], Callable[[int], int], str]] = {
    "drop the last line": (lambda lines: lines[:-1], lambda n: n, "missing"),
    "edit a line and re-chain the rest": (lambda lines: rechain(edit_actor(lines, 2), 3), lambda n: n, "rewritten"),
    "drop the first line": (lambda lines: lines[1:], lambda n: 1, "GENESIS"),
    "drop the first line and re-chain": (lambda lines: rechain(lines[1:], 0), lambda n: n, "missing"),
    "empty the log": (lambda lines: [], lambda n: 1, "missing"),
    "prev_sha256 = 5": (lambda lines: set_prev(lines, 1, 5), lambda n: 2, "wrong type"),
    "prev_sha256 = null": (lambda lines: set_prev(lines, 1, None), lambda n: 2, "wrong type"),
    "prev_sha256 not hex": (lambda lines: set_prev(lines, 1, "z" * 64), lambda n: 2, "not a sha256"),
    "a line that is not JSON": (lambda lines: [*lines[:3], b"{not json\n", *lines[4:]], lambda n: 4, "not a JSON"),
    "a JSON line that is not an object": (lambda lines: [*lines[:3], b"[1, 2]\n", *lines[4:]], lambda n: 4,
                                          "not a JSON object"),
}


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_each_tampering_is_detected_naming_the_first_bad_line(history, tmp_path, tampering):
    store = copy_of(history, tmp_path)
    tamper, first_bad, says = TAMPERINGS[tampering]
    lines = store.audit_path.read_bytes().splitlines(keepends=True)
    store.audit_path.write_bytes(b"".join(tamper(lines)))
    result = onnxgate("audit", "verify", store=store)
    assert result.returncode == 1, result.stdout
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in result.stderr
    assert f"audit.log: line {first_bad(len(lines))}:" in message and says in message, message


def test_an_untouched_log_after_a_real_history_verifies_and_replays(history):
    lines = history.audit_path.read_bytes().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["register", "register", "deploy", "canary", "promote",
                                                              "rollback"]
    head = json.loads(history.registry_path.read_bytes())["audit_head"]
    assert head == {"count": 6, "sha256": hashlib.sha256(lines[-1]).hexdigest()}
    verified = ok(onnxgate("audit", "verify", "--json", store=history))
    assert json.loads(verified.stdout) | {"path": None} == {"ok": True, "lines": 6, "anchored": True,
                                                            "anchored_lines": 6, "signature_verified": False,
                                                            "path": None}
    assert verified.stderr == ""
    assert "replay to it exactly" in ok(onnxgate("audit", "replay", store=history)).stdout


def test_restore_writes_a_head_that_verifies(history, tmp_path):
    store = copy_of(history, tmp_path)
    store.registry_path.unlink()
    ok(onnxgate("audit", "replay", "--restore", store=store))
    assert json.loads(store.registry_path.read_bytes())["audit_head"]["count"] == 6
    assert ok(onnxgate("audit", "verify", store=store)).stderr == ""
    assert "replay to it exactly" in ok(onnxgate("audit", "replay", store=store)).stdout


def test_a_registry_without_a_head_is_reported_unanchored_until_the_next_change(history, tmp_path):
    store = copy_of(history, tmp_path)
    registry = json.loads(store.registry_path.read_bytes())
    del registry["audit_head"]
    store.registry_path.write_text(json.dumps(registry, indent=2))
    unanchored = ok(onnxgate("audit", "verify", store=store))
    assert "records no audit_head" in unanchored.stderr and "next change" in unanchored.stderr
    ok(onnxgate("deploy", "tiny", "v1.1.0", "--env", "staging", store=store))
    anchored = ok(onnxgate("audit", "verify", store=store))
    assert anchored.stderr == "" and "over 7 line(s), ending at the head" in anchored.stdout


def test_signed_heads_verify_only_with_the_right_key(history, tmp_path):
    store = copy_of(history, tmp_path)
    ok(onnxgate("keygen", str(tmp_path / "keys" / "audit")))
    ok(onnxgate("keygen", str(tmp_path / "keys" / "other")))
    key, public, other = (tmp_path / "keys" / name for name in ("audit.key", "audit.pub", "other.pub"))
    unsigned = onnxgate("audit", "verify", "--public-key", str(public), store=store)
    assert unsigned.returncode == 1 and "audit_head is not signed" in unsigned.stderr

    make_history(store, audit_key=key)
    head = json.loads(store.registry_path.read_bytes())["audit_head"]
    assert head["count"] == 10 and isinstance(head["signature"], str)
    assert "signature verified" in ok(onnxgate("audit", "verify", "--public-key", str(public), store=store)).stdout
    assert "replay to it exactly" in ok(onnxgate("audit", "replay", store=store)).stdout

    wrong = onnxgate("audit", "verify", "--public-key", str(other), store=store)
    assert wrong.returncode == 1 and "does not verify with this public key" in wrong.stderr

    registry = json.loads(store.registry_path.read_bytes())
    registry["deployments"]["tiny"]["prod"]["version"] = "v1.1.0"  # the state changed, its signed head kept
    store.registry_path.write_text(json.dumps(registry, indent=2))
    edited = onnxgate("audit", "verify", "--public-key", str(public), store=store)
    assert edited.returncode == 1 and "does not verify" in edited.stderr

    del registry["audit_head"]["signature"]
    store.registry_path.write_text(json.dumps(registry, indent=2))
    stripped = onnxgate("audit", "verify", "--public-key", str(public), store=store)
    assert stripped.returncode == 1 and "not signed" in stripped.stderr and "Traceback" not in stripped.stderr
    assert ok(onnxgate("audit", "verify", store=store)).stderr == ""  # readers without the key ignore the signature


def test_an_unusable_signing_key_refuses_the_commit_before_writing(history, tmp_path):
    store = copy_of(history, tmp_path)
    registry, log = store.registry_path.read_bytes(), store.audit_path.read_bytes()
    (tmp_path / "not-a-key.pem").write_text("not a key\n")
    for key in (tmp_path / "missing.key", tmp_path / "not-a-key.pem"):
        refused = onnxgate("deploy", "tiny", "v1.1.0", "--env", "staging", store=store, audit_key=key)
        assert refused.returncode == 1 and "audit signing key" in refused.stderr and "nothing was written" in \
            refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert store.registry_path.read_bytes() == registry and store.audit_path.read_bytes() == log


def test_registry_and_log_keep_the_stores_modes(history, tmp_path):
    store = copy_of(history, tmp_path)
    store.registry_path.chmod(0o640)
    ok(onnxgate("deploy", "tiny", "v1.1.0", "--env", "staging", store=store, umask=0o077))
    assert stat.S_IMODE(store.registry_path.stat().st_mode) == 0o640

    ok(onnxgate("package", "tiny", "v1.0.0", "--out", str(tmp_path / "pkgs"), store=history))
    for umask, expected in ((0o022, 0o644), (0o027, 0o640)):
        fresh = Store(tmp_path / f"fresh-{umask:o}")
        ok(onnxgate("import", str(tmp_path / "pkgs" / "tiny_v1.0.0.tar.gz"), store=fresh, umask=umask))
        assert stat.S_IMODE(fresh.registry_path.stat().st_mode) == expected
        assert stat.S_IMODE(fresh.audit_path.stat().st_mode) == expected


def test_keygen_force_writes_the_private_key_0600_whatever_the_old_file_had(tmp_path):
    prefix = tmp_path / "keys" / "release"
    prefix.parent.mkdir()
    Path(f"{prefix}.key").write_text("an old key\n")
    Path(f"{prefix}.key").chmod(0o644)
    refused = onnxgate("keygen", str(prefix))
    assert refused.returncode == 2 and "--force" in refused.stderr
    ok(onnxgate("keygen", str(prefix), "--force", umask=0o022))
    private = Path(f"{prefix}.key")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and b"PRIVATE KEY" in private.read_bytes()
    assert stat.S_IMODE(Path(f"{prefix}.pub").stat().st_mode) == 0o644
