"""The store commands on a store with one broken file: the commands that read it answer one line on stderr and a
non-zero exit code, never a traceback; the others answer as usual; `list` still lists every other version."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from modelstore.layout import Store
from onnxgate.__main__ import main
from tests.factories import deploy_version, edit_registry, publish_classifier, put_non_utf8_byte

COMMANDS = {
    "list": ["list"],
    "show": ["show", "iris", "v2.0.0"],
    "verify": ["verify", "iris", "v2.0.0"],
    "history": ["history"],
    "status": ["status"],
}


def non_utf8_metadata(store: Store) -> None:
    put_non_utf8_byte(store.metadata_path("iris", "v2.0.0"))


def model_file_is_a_directory(store: Store) -> None:
    # A file that cannot be read. Not chmod 000: tests may run as root, who reads it anyway.
    path = store.model_path("iris", "v2.0.0")
    path.unlink()
    path.mkdir()


def audit_line_not_json(store: Store) -> None:
    with store.audit_path.open("a") as audit:
        audit.write("this line is not JSON\n")


def registry_not_json(store: Store) -> None:
    store.registry_path.write_text('{"models": {')


def registry_deleted(store: Store) -> None:
    store.registry_path.unlink()


def deployment_with_malformed_date(store: Store) -> None:
    edit_registry(store, lambda r: r["deployments"]["iris"]["production"].update(deployed_at="last Tuesday"))


@dataclass(frozen=True)
class Broken:
    """`errors`: for each command that reads the broken file, its exit code and a fragment of its one-line error."""

    inject: Callable[[Store], None]
    errors: dict[str, tuple[int, str]]


BROKEN = {
    "metadata-non-utf8": Broken(non_utf8_metadata, {
        "list": (1, "iris/v2.0.0/metadata.json: invalid metadata"),
        "show": (1, "iris/v2.0.0/metadata.json: invalid metadata"),
        "verify": (1, "iris/v2.0.0/metadata.json: invalid metadata"),
    }),
    "model-file-a-directory": Broken(model_file_is_a_directory, {
        "verify": (1, "iris/v2.0.0/model.onnx: cannot be read"),
    }),
    "audit-line-not-json": Broken(audit_line_not_json, {
        "history": (1, "audit.log: line 6 is not a valid audit entry"),
    }),
    "registry-not-json": Broken(registry_not_json, {
        "list": (5, "registry.json: registry is not valid JSON"),
        "status": (5, "registry.json: registry is not valid JSON"),
    }),
    "registry-deleted": Broken(registry_deleted, {
        "list": (5, "registry.json is missing"),
        "status": (5, "registry.json is missing"),
    }),
    "deployment-malformed-date": Broken(deployment_with_malformed_date, {
        "list": (1, "registry entry deployments.iris.production is invalid"),
        "status": (5, "registry entry deployments.iris.production is invalid"),
    }),
}


@pytest.fixture
def published(store: Store) -> Store:
    """iris v1.0.0 (deployed to production) and v2.0.0, other v1.0.0 (deployed to production): 5 audit lines."""
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    publish_classifier(store, "other", "v1.0.0", seed=3)
    deploy_version(store, "iris", "v1.0.0")
    deploy_version(store, "other", "v1.0.0")
    return store


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_file_is_one_line_and_an_exit_code(published: Store, capsys: pytest.CaptureFixture, broken: Broken,
                                                     command: str):
    broken.inject(published)
    code = main([*COMMANDS[command], "--store", str(published.root)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if command not in broken.errors:  # a command that does not read the broken file answers as usual
        assert (code, captured.err) == (0, ""), captured.err
        return
    expected_code, message = broken.errors[command]
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"onnxgate {command}: error: ") and message in line, line
    assert code == expected_code


def test_list_marks_the_broken_version_and_lists_the_others(published: Store, capsys: pytest.CaptureFixture):
    non_utf8_metadata(published)
    assert main(["list", "--store", str(published.root), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["version"], r["status"], r["environments"]) for r in rows] == [
        ("iris", "v1.0.0", "deployed", ["production"]),
        ("iris", "v2.0.0", "broken", []),
        ("other", "v1.0.0", "deployed", ["production"]),
    ]
    assert "metadata.json" in rows[1]["error"]


def test_status_lists_the_valid_deployments_beside_an_invalid_one(published: Store, capsys: pytest.CaptureFixture):
    deployment_with_malformed_date(published)
    assert main(["status", "--store", str(published.root), "--json"]) == 5
    captured = capsys.readouterr()
    assert [(row["model"], row["version"]) for row in json.loads(captured.out)] == [("other", "v1.0.0")]
    assert "last Tuesday" in captured.err
