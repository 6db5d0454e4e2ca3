from __future__ import annotations

import json

import pytest

from modelstore.deployments import deploy
from modelstore.errors import InvalidName
from modelstore.versions import MAX_VERSION_CHARS, check_name, check_version, sort_versions


def test_versions_sort_as_versions_not_strings():
    assert sort_versions(["v1.10.0", "v1.2.0", "v1.2.0-rc.2", "v1.2.0-rc.10", "v0.9.9", "v2.0.0"]) == [
        "v0.9.9", "v1.2.0-rc.2", "v1.2.0-rc.10", "v1.2.0", "v1.10.0", "v2.0.0"]


@pytest.mark.parametrize("bad", ["../etc", "Model", "", "a/b", "-x"])
def test_bad_names_are_refused(bad):
    with pytest.raises(InvalidName):
        check_name(bad)


@pytest.mark.parametrize("bad", ["iris\n", "iris\n\n", "a" * 65, "a" * 100_000])
def test_names_are_matched_whole_and_bounded(bad):
    with pytest.raises(InvalidName) as refused:
        check_name(bad)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


@pytest.mark.parametrize("bad", ["v1.0.0\n", "v1.0.0-rc\n", "v1.0.0-" + "a" * 58, "v1.0.0-" + "a" * 100_000,
                                 "v\u0661.0.0", "v" + "9" * 5000 + ".0.0"])
def test_versions_are_matched_whole_ascii_and_bounded(bad):
    with pytest.raises(InvalidName) as refused:
        check_version(bad)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300
    assert sort_versions([bad, "v1.0.0"]) == ["v1.0.0"]


def test_a_version_of_exactly_the_cap_is_valid():
    edge = "v1.0.0-" + "a" * (MAX_VERSION_CHARS - len("v1.0.0-"))
    assert check_version(edge) == edge


def test_registry_entries_with_a_newline_in_their_name_are_set_aside(make_store):
    store = make_store({"iris": ["v1.0.0"]})
    deploy(store, "iris", "v1.0.0", "production")
    raw = json.loads(store.registry_path.read_text())
    raw["models"]["iris\n"] = raw["models"]["iris"]
    raw["models"]["iris"]["v1.0.0\n"] = raw["models"]["iris"]["v1.0.0"]
    store.registry_path.write_text(json.dumps(raw))
    data = store.registry.read().state
    assert list(data.models) == ["iris"] and list(data.models["iris"]) == ["v1.0.0"]
    assert {entry.where for entry in data.invalid} == {"models.iris\n", "models.iris.v1.0.0\n"}
    with pytest.raises(InvalidName):
        deploy(store, "iris\n", "v1.0.0", "production")
    with pytest.raises(InvalidName):
        deploy(store, "iris", "v1.0.0\n", "production")


def test_a_non_finite_metric_in_the_registry_is_set_aside_and_never_written_back(make_store):
    store = make_store({"iris": ["v1.0.0", "v1.1.0"]})
    text = store.registry_path.read_text().replace('"accuracy": 0.9', '"accuracy": NaN', 1)
    assert "NaN" in text
    store.registry_path.write_text(text)
    data = store.registry.read().state
    assert len(data.invalid) == 1 and "finite" in data.invalid[0].reason
    deploy(store, "iris", "v1.1.0", "production")  # a write keeps the set-aside entry, as valid JSON
    written = store.registry_path.read_text()
    assert "NaN" not in written.replace('"NaN"', "")
    json.loads(written, parse_constant=lambda name: pytest.fail(f"registry.json holds a bare {name}"))
    assert store.registry.read().state.invalid[0].raw["metrics"] == {"accuracy": "NaN"}
