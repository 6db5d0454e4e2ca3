"""The gates of policy.toml, through the CLI as a user runs it: each gate refusing (with its figures, a distinct exit
code and a deployment_denied audit entry) and passing, approvals counted as the policy says, --dry-run changing
nothing, and a policy with a typo refused with its line and field. Over the file store and the shared backends (the
registry in a real PostgreSQL, the versions' files in a real S3-compatible bucket; the policy file beside the local
copies, where the CLI reads it)."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelstore.evaluations import record_evaluation
from modelstore.layout import Store
from modelstore.metadata import NodeCompatibility, ParityResult
from modelstore.registry import EvaluationRecord
from modelstore.replay import replay, same_registry
from modelstore.transitions import Change
from tests.factories import BACKENDS, backend_store
from tests.governance.gate_fixtures import (
    GATE_EXIT,
    POLICY_EXIT,
    PRODUCTION_POLICY,
    audit,
    governed_store,
    history,
    onnxgate,
)

GOOD = {"metrics": {"accuracy": 0.91, "f1": 0.88}, "training_samples": 500}
WEAK = {"metrics": {"accuracy": 0.64, "f1": 0.50}, "training_samples": 8}


@pytest.fixture(params=BACKENDS)
def governed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """governed(name, versions, policy=...) -> governed_store at tmp_path/name over this test's backend."""
    with contextlib.ExitStack() as stores:
        def build(name: str, versions: dict[str, dict], policy: str | None = PRODUCTION_POLICY) -> Store:
            root = tmp_path / name
            return governed_store(root, versions, policy, stores.enter_context(backend_store(request.param, root,
                                                                                             request)))
        yield build


@pytest.fixture
def store(governed):
    return governed("store", {"v1.0.0": GOOD, "v1.1.0": WEAK, "v1.2.0": GOOD})


def shared(store: Store) -> bool:
    return store.registry_backend is not None


def registry_contents(store: Store) -> object:
    """What the registry holds, but for its revision and audit head: registry.json's JSON for the file store (read as
    a user's editor would), the state read through the store's API for the shared backends."""
    if shared(store):
        return store.registry.read().state.model_dump(exclude={"revision"})
    return registry_without_revision(store.registry_path.read_bytes())


def everything_stored(store: Store) -> object:
    """The registry and the audit log exactly: their bytes for the file store; for the shared backends, the
    registry's revision (it moves on every write) and the audit entries."""
    if shared(store):
        return store.registry.read().revision, store.registry.audit.entries()
    return store.registry_path.read_bytes(), store.audit_path.read_bytes()


def deployed(store, environment: str) -> str | None:
    deployment = store.registry.read().state.deployment("tiny", environment)
    return deployment.version if deployment else None


def test_a_refusal_lists_every_failing_check_with_value_and_limit_and_is_audited(store):
    assert onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "staging").returncode == 0  # 0.64 >= 0.6
    before = registry_contents(store)
    refused = onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "production", "--actor", "alice")
    assert refused.returncode == GATE_EXIT, refused.stderr
    message = refused.stderr
    for expected in ("accuracy = 0.64 (given), needs >= 0.7", "f1 = 0.5 (given), needs >= 0.65",
                     "training_samples = 8, needs >= 10", "approvals = pending"):
        assert expected in message
    assert deployed(store, "production") is None
    [denied] = audit(store, "deployment_denied")
    verdict = denied["details"]
    assert (denied["actor"], denied["model"], denied["environment"], denied["after"]) == ("alice", "tiny", "production",
                                                                                          "v1.1.0")
    failing = {c["check"]: (c["value"], c["limit"]) for c in verdict["checks"] if not c["passed"]}
    assert failing["accuracy"] == (0.64, ">= 0.7") and failing["training_samples"] == (8, ">= 10")
    assert {c["check"] for c in verdict["checks"] if c["passed"]} >= {"sha256_verified", "parity_passed",
                                                                      "deployed_to.staging"}
    state = store.registry.read().state
    assert state.deployments["tiny"].keys() == {"staging"}
    assert registry_contents(store) == before
    assert [e["event"] for e in history(store, "--event", "deployment_denied")] == ["deployment_denied"]


def registry_without_revision(raw: bytes) -> dict:
    payload = json.loads(raw)
    payload.pop("revision"), payload.pop("audit_head")
    return payload


def test_every_gate_passes_for_a_good_version_approved_by_someone_else(store):
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging").returncode == 0
    refused = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice")
    assert refused.returncode == GATE_EXIT and "approvals = pending" in refused.stderr
    assert onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob").returncode == 0
    done = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice")
    assert done.returncode == 0, done.stderr
    assert "gates for tiny v1.0.0 in production (stable): passed" in done.stdout
    assert "ok  accuracy = 0.91 (given), needs >= 0.7" in done.stdout
    assert deployed(store, "production") == "v1.0.0"
    verified = [e for e in audit(store, "deployment_verified") if e["environment"] == "production"]
    assert len(verified) == 1 and verified[0]["details"]["passed"] is True
    events = [e["event"] for e in audit(store)]
    assert events[-3:] == ["deployment_approved", "deployment_verified", "deployment_completed"]
    assert same_registry(replay(store.registry.audit.entries()), store.registry.read().state)


def test_the_actors_own_approval_does_not_count_unless_the_policy_says_so(store, governed):
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging")
    assert onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "alice").returncode == 0
    own = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice")
    assert own.returncode == GATE_EXIT and "own approval of alice not counted" in own.stderr
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "carol").returncode == 0

    lenient = governed("lenient", {"v1.0.0": GOOD},
                             policy="[environments.production]\napprovals = 1\nself_approval = true\n")
    onnxgate(lenient, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "alice")
    assert onnxgate(lenient, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice").returncode == 0


def test_a_rejection_blocks_until_the_reviewer_changes_their_mind(store):
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging")
    for reviewer in ("bob", "carol"):
        onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", reviewer)
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "dave", "--reject",
             "--reason", "calibration looks off")
    blocked = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice")
    assert blocked.returncode == GATE_EXIT and "rejected by dave" in blocked.stderr
    shown = onnxgate(store, "show", "tiny", "v1.0.0")
    assert "approvals   production (rejected): bob approved, carol approved, dave rejected" in shown.stdout
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "dave")
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production", "--actor", "alice").returncode == 0
    assert [e["details"]["status"] for e in audit(store) if e["action"] == "approval"] == [
        "approved", "approved", "rejected", "approved"]
    assert {e["event"] for e in audit(store) if e["action"] == "approval"} == {"deployment_approved",
                                                                               "deployment_rejected"}


def test_production_requires_the_version_deployed_to_staging_first(store):
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob")
    skipped = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert skipped.returncode == GATE_EXIT and "deployed_to.staging = [], needs includes staging" in skipped.stderr
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging")
    onnxgate(store, "deploy", "tiny", "v1.2.0", "--env", "staging")  # v1.0.0 no longer serves staging: it did
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production").returncode == 0


def test_dry_run_prints_the_verdict_and_changes_nothing(store):
    before = everything_stored(store)
    passing = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging", "--dry-run")
    assert passing.returncode == 0, passing.stderr
    assert passing.stdout.startswith("dry run, nothing was changed") and "ok  accuracy = 0.91" in passing.stdout
    failing = onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "production", "--dry-run", "--json")
    assert failing.returncode == GATE_EXIT and "training_samples = 8" in failing.stderr
    assert everything_stored(store) == before


def test_canary_and_promote_are_gated_and_a_manual_rollback_needs_its_own_approvals(store):
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging")
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob")
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production").returncode == 0
    weak_canary = onnxgate(store, "canary", "tiny", "v1.1.0", "--env", "production", "--weight", "10")
    assert weak_canary.returncode == GATE_EXIT and "accuracy = 0.64" in weak_canary.stderr
    assert store.registry.read().state.deployment("tiny", "production").canary is None

    onnxgate(store, "deploy", "tiny", "v1.2.0", "--env", "staging")
    onnxgate(store, "approve", "tiny", "v1.2.0", "--env", "production", "--actor", "bob")
    assert onnxgate(store, "canary", "tiny", "v1.2.0", "--env", "production", "--weight", "10").returncode == 0
    onnxgate(store, "approve", "tiny", "v1.2.0", "--env", "production", "--actor", "bob", "--reject")
    blocked = onnxgate(store, "promote", "tiny", "--env", "production")
    assert blocked.returncode == GATE_EXIT and "rejected by bob" in blocked.stderr
    assert store.registry.read().state.deployment("tiny", "production").canary.version == "v1.2.0"
    onnxgate(store, "approve", "tiny", "v1.2.0", "--env", "production", "--actor", "bob")
    assert onnxgate(store, "promote", "tiny", "--env", "production").returncode == 0
    assert deployed(store, "production") == "v1.2.0"

    store.policy_path.write_text(store.policy_path.read_text().replace("rollback_approvals = 0",
                                                                       "rollback_approvals = 1"))
    rollback = onnxgate(store, "rollback", "tiny", "--env", "production", "--actor", "alice")
    assert rollback.returncode == GATE_EXIT and "rollback_approvals = pending" in rollback.stderr
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--rollback", "--actor", "bob")
    assert onnxgate(store, "rollback", "tiny", "--env", "production", "--actor", "alice").returncode == 0
    assert deployed(store, "production") == "v1.0.0"
    assert audit(store)[-1]["event"] == "deployment_rolled_back"


def test_an_environment_without_rules_and_a_store_without_a_policy_are_not_gated(governed):
    store = governed("open", {"v1.1.0": WEAK}, policy=None)
    done = onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "production")
    assert done.returncode == 0 and "gates" not in done.stdout
    assert [e["action"] for e in audit(store)] == ["register", "deploy"]
    gated = governed("governed", {"v1.1.0": WEAK})
    assert onnxgate(gated, "deploy", "tiny", "v1.1.0", "--env", "dev").returncode == 0


@pytest.mark.parametrize(("policy", "expected"), [
    ("[environments.production]\nmin_metrics = { accuracy = 0.7 }\napproval = 1\n",
     "line 3: environments.production.approval: unknown field (did you mean 'approvals'?)"),
    ("[environments.production]\nmin_training_samples = 'ten'\n",
     "line 2: environments.production.min_training_samples: Input should be a valid integer"),
    ("[environments.production\n", "not valid TOML"),
])
def test_a_policy_with_a_typo_is_refused_naming_line_and_field_and_blocks_gated_changes(governed, policy, expected):
    store = governed("store", {"v1.0.0": GOOD}, policy=policy)
    checked = onnxgate(store, "policy")
    assert checked.returncode == POLICY_EXIT and expected in checked.stderr
    assert f"{store.policy_path}" in checked.stderr and checked.stderr.count("\n") == 1
    deploy = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert deploy.returncode == POLICY_EXIT and expected in deploy.stderr
    assert deployed(store, "production") is None


def test_a_snapshot_restores_every_environment_through_the_gates(store):
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "staging")
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob")
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    created = onnxgate(store, "snapshot", "create", "--name", "before v1.2.0")
    assert created.returncode == 0 and created.stdout.startswith("snapshot 1 saved: 2 deployment(s)")
    onnxgate(store, "deploy", "tiny", "v1.2.0", "--env", "staging")
    onnxgate(store, "approve", "tiny", "v1.2.0", "--env", "production", "--actor", "bob")
    onnxgate(store, "deploy", "tiny", "v1.2.0", "--env", "production")
    listed = json.loads(onnxgate(store, "snapshot", "list", "--json").stdout)
    assert listed["1"]["name"] == "before v1.2.0"
    assert listed["1"]["deployments"] == {"tiny": {"production": "v1.0.0", "staging": "v1.0.0"}}

    before = everything_stored(store)
    plan = onnxgate(store, "snapshot", "restore", "1", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "tiny in production: v1.2.0 -> v1.0.0" in plan.stdout and "tiny in staging: v1.2.0 -> v1.0.0" in plan.stdout
    assert everything_stored(store) == before
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob", "--reject")
    refused = onnxgate(store, "snapshot", "restore", "1")
    assert refused.returncode == GATE_EXIT and "rejected by bob" in refused.stderr
    assert (deployed(store, "staging"), deployed(store, "production")) == ("v1.2.0", "v1.2.0")
    onnxgate(store, "approve", "tiny", "v1.0.0", "--env", "production", "--actor", "bob")
    restored = onnxgate(store, "snapshot", "restore", "1", "--actor", "ops")
    assert restored.returncode == 0, restored.stderr
    assert (deployed(store, "staging"), deployed(store, "production")) == ("v1.0.0", "v1.0.0")
    [entry] = audit(store, "snapshot_restored")
    assert entry["actor"] == "ops" and len(entry["details"]["changes"]) == 2
    assert same_registry(replay(store.registry.audit.entries()), store.registry.read().state)
    again = onnxgate(store, "snapshot", "restore", "1")
    assert again.returncode == 1 and "nothing to restore" in again.stderr
    missing = onnxgate(store, "snapshot", "restore", "9")
    assert missing.returncode == 1 and "no snapshot '9' (snapshots: 1)" in missing.stderr


FAILED_PARITY = ParityResult(passed=False, rows=10, synthetic_rows=False, tolerance=1e-4, reference="scikit-learn",
                             detail="max |diff| 0.3")
NODE_INCOMPATIBLE = NodeCompatibility(compatible=False, opset=17, max_opset=21, problems=["op X is not in Node"])


@pytest.mark.parametrize(("rules", "failing", "passing", "expected"), [
    ("max_metrics = { ece = 0.1 }", {"metrics": {"ece": 0.2}}, {"metrics": {"ece": 0.05}}, "ece = 0.2 (given), needs <= 0.1"),
    ("min_metrics = { roc_auc = 0.75 }", {"metrics": {}}, {"metrics": {"roc_auc": 0.8}},
     "roc_auc = None (missing), needs >= 0.75"),
    ("require_parity = true", {"parity": FAILED_PARITY}, {}, "parity_passed = False, needs true"),
    ("require_node_compatible = true", {"node_compatibility": NODE_INCOMPATIBLE}, {},
     "node_compatible = False, needs true"),
    ("min_training_samples = 10", {"training_samples": None}, {"training_samples": 10},
     "training_samples = None, needs >= 10"),
])
def test_each_gate_refuses_a_version_that_fails_it_and_passes_one_that_does_not(governed, rules, failing, passing,
                                                                                 expected):
    store = governed("store", {"v1.0.0": failing, "v2.0.0": passing},
                           policy=f"[environments.production]\n{rules}\n")
    refused = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert refused.returncode == GATE_EXIT and expected in refused.stderr, refused.stderr
    passed = onnxgate(store, "deploy", "tiny", "v2.0.0", "--env", "production")
    assert passed.returncode == 0, passed.stderr
    assert deployed(store, "production") == "v2.0.0"


def test_measured_metrics_are_preferred_over_the_given_ones(governed):
    store = governed("store", {"v1.0.0": GOOD},
                           policy="[environments.production]\nmin_metrics = { accuracy = 0.7 }\n")
    measured = EvaluationRecord(measured_at="2026-12-01T10:00:00Z", actor="ci", dataset="holdout.csv",
                                dataset_sha256="0" * 64, rows=200, task="classification", label="y",
                                metrics={"accuracy": 0.55})
    record_evaluation(store, "tiny", "v1.0.0", measured, Change(actor="ci"))
    refused = onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert refused.returncode == GATE_EXIT and "accuracy = 0.55 (measured), needs >= 0.7" in refused.stderr
    assert audit(store, "model_evaluated")[0]["details"]["metrics"] == {"accuracy": 0.55}


def test_a_signature_is_required_when_the_policy_says_so(governed, tmp_path):
    source = governed("source", {"v1.0.0": GOOD}, policy=None)
    target = governed("target", {}, policy="[environments.production]\nrequire_signature = true\n")
    keys = tmp_path / "keys" / "release"
    assert subprocess.run([sys.executable, "-m", "onnxgate", "keygen", str(keys)], timeout=120).returncode == 0
    packages = tmp_path / "packages"
    assert onnxgate(source, "package", "tiny", "v1.0.0", "--out", str(packages), "--sign", f"{keys}.key").returncode == 0
    archive = str(packages / "tiny_v1.0.0.tar.gz")
    assert onnxgate(target, "import", archive).returncode == 0  # signed, but the key was not checked
    unchecked = onnxgate(target, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert unchecked.returncode == GATE_EXIT and "signature_verified = False" in unchecked.stderr
    assert onnxgate(target, "import", archive, "--force", "--public-key", f"{keys}.pub").returncode == 0
    assert onnxgate(target, "deploy", "tiny", "v1.0.0", "--env", "production").returncode == 0


def test_a_promotion_checks_the_artifact_again(governed):
    store = governed("store", {"v1.0.0": GOOD, "v2.0.0": GOOD}, policy="[environments.production]\nverify_sha256 = true\n")
    if shared(store):
        pytest.skip("tampers the version's file by hand: the file store only")
    onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production")
    assert onnxgate(store, "canary", "tiny", "v2.0.0", "--env", "production", "--weight", "10").returncode == 0
    model = store.model_path("tiny", "v2.0.0")
    model.write_bytes(model.read_bytes() + b"\0")
    refused = onnxgate(store, "promote", "tiny", "--env", "production")
    assert refused.returncode == GATE_EXIT and "sha256_verified = " in refused.stderr and "sha256 mismatch" in refused.stderr
    assert deployed(store, "production") == "v1.0.0"


def test_a_models_own_table_overrides_its_environments_keys(governed):
    policy = ("[environments.production]\nmin_metrics = { accuracy = 0.95 }\nmin_training_samples = 10\n\n"
              "[environments.production.models.tiny]\nmin_metrics = { accuracy = 0.9 }\n")
    store = governed("store", {"v1.0.0": GOOD, "v1.1.0": {**GOOD, "training_samples": 5}}, policy=policy)
    shown = onnxgate(store, "policy")
    assert shown.returncode == 0 and "'tiny'" in shown.stdout
    refused = onnxgate(store, "deploy", "tiny", "v1.1.0", "--env", "production")  # the environment's samples rule
    assert refused.returncode == GATE_EXIT and "training_samples = 5, needs >= 10" in refused.stderr
    assert "accuracy" not in refused.stderr  # 0.91 passes the model's own 0.9, not the environment's 0.95
    assert onnxgate(store, "deploy", "tiny", "v1.0.0", "--env", "production").returncode == 0
