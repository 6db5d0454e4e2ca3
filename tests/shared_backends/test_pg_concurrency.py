"""Several processes changing one PostgreSQL registry at once lose nothing: every change is in the final state, every
change has its audit entry, the chain verifies, and the revisions count the commits exactly."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelstore.layout import Store
from tests.factories import make_shared_store, publish_classifier

WRITERS = 4
CHANGES = 10

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from modelstore.deployments import Change, deploy
    from modelstore.layout import open_store

    root, url, worker, changes, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    store = open_store(Path(root), registry_url=url, artifacts_url=sys.argv[6] or None)
    while not go.exists():  # every writer imported and connected: start together
        time.sleep(0.005)
    for change in range(changes):
        version = ("v1.0.0", "v2.0.0")[change % 2]
        deploy(store, "iris", version, f"w{worker}-{change}", Change(actor=f"writer{worker}", reason=str(change)))
        deploy(store, "iris", version, "shared", Change(actor=f"writer{worker}", reason=f"shared {change}"))
    store.close()
""")


@pytest.fixture(params=["pg", "pg+s3"])
def backends(request: pytest.FixtureRequest, tmp_path: Path, registry_url: str) -> tuple[Store, str]:
    """The store the writers share, and its artifacts URL ('' for its own directory): the registry in PostgreSQL, the
    versions' files in the store directory or in a bucket (each writer then verifies them from the bucket)."""
    if request.param == "pg":
        return request.getfixturevalue("pg_store"), ""
    bucket_url = request.getfixturevalue("bucket_url")
    store = make_shared_store(tmp_path / "writer", registry_url, bucket_url)
    request.addfinalizer(store.close)
    return store, bucket_url


def test_concurrent_deploys_from_several_processes_lose_nothing(backends: tuple[Store, str], registry_url: str,
                                                                tmp_path: Path):
    pg_store, bucket_url = backends
    publish_classifier(pg_store, "iris", "v1.0.0", seed=1)
    publish_classifier(pg_store, "iris", "v2.0.0", seed=2)
    before = pg_store.registry.read()
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(pg_store.root), registry_url, str(worker),
                                 str(CHANGES), str(go), bucket_url], stderr=subprocess.PIPE, text=True)
               for worker in range(WRITERS)]
    time.sleep(0.5)
    go.touch()
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr

    after = pg_store.registry.read()
    deployments = after.state.deployments["iris"]
    for worker in range(WRITERS):
        for change in range(CHANGES):
            assert deployments[f"w{worker}-{change}"].version == ("v1.0.0", "v2.0.0")[change % 2]
    # the shared environment saw every writer's deploys: each that changed the version is a commit, each commit an entry
    entries = pg_store.registry.audit.entries()
    new = [e for e in entries if e.get("revision", 0) > before.state.revision]
    own = [e for e in new if e["environment"] != "shared"]
    assert sorted((e["actor"], e["reason"]) for e in own) == sorted(
        (f"writer{worker}", str(change)) for worker in range(WRITERS) for change in range(CHANGES))
    shared = [e for e in new if e["environment"] == "shared"]
    assert shared and all(e["action"] == "deploy" for e in new)
    assert [e["revision"] for e in new] == list(range(before.state.revision + 1, after.state.revision + 1))
    assert after.state.revision == before.state.revision + len(own) + len(shared)
    assert int(after.revision) == int(before.revision) + len(own) + len(shared)
    assert deployments["shared"].version == shared[-1]["after"]
    assert pg_store.registry.verify_audit().lines == len(entries)
