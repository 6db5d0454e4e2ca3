"""hypothesis over package archives for `onnxgate import`: hostile members (`..`, absolute paths, links pointing out,
device files, duplicates, lying sizes, non-UTF-8 names), truncated and bit-flipped gzip, and valid packages (built by
`onnxgate package`'s library function from a real ONNX model) with one thing mutated. Imported through the library
function the CLI uses, and a few through the CLI itself. Never a file written outside the store (a sentinel directory
around it is listed before and after), never anything but our StoreError family (the CLI: one line, no traceback), and
the store stays consistent (the model it already had still verifies)."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelstore.deployments import Change
from modelstore.errors import InvalidName, StoreError
from modelstore.fileio import sha256_bytes
from modelstore.layout import Store
from modelstore.package import build_package, import_package
from tests.adversarial.conftest import DEADLINE_S, count_cases
from tests.factories import make_store, publish_classifier

EXAMPLES = 120
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
KEPT = ("kept", "v1.0.0")  # the model the target store already has


@dataclass(frozen=True)
class Sandbox:
    """sentinel/ holds the store (sentinel/a/b/store) and the archives (sentinel/archives); anything else appearing
    under sentinel/ was written outside the store."""

    sentinel: Path
    store: Store
    archive: Path
    valid_members: tuple[tuple[str, bytes], ...]

    def outside_listing(self) -> set[str]:
        skip = (self.store.root, self.archive.parent)
        return {str(p) for p in self.sentinel.rglob("*") if not any(p == s or s in p.parents for s in skip)}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    source = make_store(tmp_path_factory.mktemp("source") / "models")
    publish_classifier(source, "iris", "v1.0.0", seed=1)
    package = build_package(source, "iris", "v1.0.0", tmp_path_factory.mktemp("packages"))
    with tarfile.open(package, "r:gz") as tar:
        members = tuple((info.name, tar.extractfile(info).read()) for info in tar)  # type: ignore[union-attr]
    sentinel = tmp_path_factory.mktemp("sentinel")
    store = make_store(sentinel / "a" / "b" / "store")
    publish_classifier(store, *KEPT, seed=2)
    (sentinel / "archives").mkdir()
    (sentinel / "a" / "marker").write_text("here before")
    return Sandbox(sentinel, store, sentinel / "archives" / "package.tar.gz", members)


# -- building archives byte by byte (tarfile alone would refuse to write most of these) ------------------------------

@dataclass(frozen=True)
class Member:
    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    declared_size: int | None = None  # a header that lies about the data's size


def tar_bytes(members: list[Member], *, end_blocks: bool = True) -> bytes:
    out = io.BytesIO()
    for member in members:
        info = tarfile.TarInfo(member.name)
        info.type, info.linkname, info.mode = member.kind, member.link, 0o644
        info.size = len(member.data) if member.declared_size is None else member.declared_size
        if member.kind != tarfile.REGTYPE:
            info.size = member.declared_size or 0
        out.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        out.write(member.data)
        out.write(b"\0" * (-len(member.data) % tarfile.BLOCKSIZE))
    if end_blocks:
        out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return out.getvalue()


def gzipped(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def hostile_names(sandbox: Sandbox) -> st.SearchStrategy[str]:
    escape = str(sandbox.sentinel / "escaped")
    return st.sampled_from([
        "../escaped", "../../../escaped", "iris/v1.0.0/../../../../escaped", escape, "/tmp/../" + escape.lstrip("/"),
        "iris/v1.0.0/model.onnx", "manifest.json", "iris/v1.0.0/metadata.json", "iris/../../escaped", "", ".", "./",
        "iris\\..\\..\\escaped", "iris/v1.0.0/\udcff\udcfe", "\udcc3(", "iris/v1.0.0/" + "x" * 300,
        "iris/v1.0.0/sub/file", "iris/v1.0.0/", "/", "//escaped", "iris/v1.0.0/.",
    ]) | st.text(max_size=20)


def members_strategy(sandbox: Sandbox) -> st.SearchStrategy[list[Member]]:
    escape = str(sandbox.sentinel / "escaped")
    member = st.builds(
        Member,
        name=hostile_names(sandbox),
        data=st.binary(max_size=64),
        kind=st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                              tarfile.FIFOTYPE, tarfile.DIRTYPE, tarfile.CONTTYPE, b"x", b"g"]),
        link=st.sampled_from(["", "../escaped", escape, "/etc/passwd", "manifest.json", "iris/v1.0.0/model.onnx"]),
        declared_size=st.none() | st.sampled_from([0, 1, 511, 513, 2**20, 2**31, 2**33 - 1, 2**40]),
    ).map(small_extended_header)
    return st.lists(member, min_size=1, max_size=5)


def small_extended_header(member: Member) -> Member:
    """tarfile reads a pax header's declared size into memory before we see the member (see
    test_huge_pax_header_is_refused): generated ones stay small, so the suite never allocates gigabytes."""
    if member.kind in (tarfile.XHDTYPE, tarfile.XGLTYPE) and (member.declared_size or 0) > 2**20:
        return Member(member.name, member.data, member.kind, member.link, 2**20)
    return member


@st.composite
def mutated_package(draw: st.DrawFn, sandbox: Sandbox) -> bytes:
    """The valid package with one change: a member renamed, retyped, duplicated, dropped, its bytes or size changed,
    its manifest or metadata edited; then maybe the gzip stream truncated or a byte flipped."""
    members = [Member(name, data) for name, data in sandbox.valid_members]
    index = draw(st.integers(0, len(members) - 1))
    target = members[index]
    action = draw(st.sampled_from(["rename", "link", "duplicate", "drop", "flip", "size", "json", "none"]))
    if action == "rename":
        members[index] = Member(draw(hostile_names(sandbox)), target.data)
    elif action == "link":
        members[index] = Member(target.name, b"", draw(st.sampled_from([tarfile.SYMTYPE, tarfile.LNKTYPE])),
                                draw(st.sampled_from(["../../escaped", str(sandbox.sentinel / "escaped")])))
    elif action == "duplicate":
        members.insert(index, Member(target.name, draw(st.binary(max_size=32)) if draw(st.booleans()) else target.data))
    elif action == "drop":
        del members[index]
    elif action == "flip" and target.data:
        position = draw(st.integers(0, len(target.data) - 1))
        data = bytearray(target.data)
        data[position] ^= 1 << draw(st.integers(0, 7))
        members[index] = Member(target.name, bytes(data))
    elif action == "size":
        members[index] = Member(target.name, target.data, declared_size=draw(st.sampled_from([0, 2**20, 2**31, 2**40])))
    elif action == "json" and target.name.endswith(".json"):
        members[index] = Member(target.name, edited_json(draw, target.data))
    archive = gzipped(tar_bytes(members, end_blocks=draw(st.booleans())))
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        archive = archive[:draw(st.integers(0, len(archive) - 1))]
    elif damage == "flip":
        position = draw(st.integers(0, len(archive) - 1))
        archive = archive[:position] + bytes([archive[position] ^ 0xFF]) + archive[position + 1:]
    return archive


def edited_json(draw: st.DrawFn, raw: bytes) -> bytes:
    """manifest.json or metadata.json with one top-level field set to a hostile value."""
    document = json.loads(raw)
    key = draw(st.sampled_from(sorted(document)))
    document[key] = draw(st.sampled_from([
        "../../escaped", "iris\n", "x" * 5000, "v1.0.0-" + "a" * 300, None, [], {}, -1, 2**70, "/abs/path",
        [{"path": "../../escaped", "size": 1, "sha256": "0" * 64}],
    ]))
    return json.dumps(document).encode()


def archives(sandbox: Sandbox) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated_package(sandbox),
        members_strategy(sandbox).map(lambda members: gzipped(tar_bytes(members))),
        st.binary(max_size=300),
        st.binary(max_size=300).map(gzipped),
    )


# -- invariants -----------------------------------------------------------------------------------------------------


def check_store(sandbox: Sandbox, outside_before: set[str]) -> None:
    assert sandbox.outside_listing() == outside_before, "a file was written outside the store"
    assert sandbox.store.verify_version(*KEPT).name == KEPT[0]


@pytest.mark.e2e
def test_import_never_escapes_or_crashes(sandbox: Sandbox) -> None:
    outside_before = sandbox.outside_listing()
    outcomes: dict[str, int] = {}

    @SETTINGS
    @given(archive=archives(sandbox))
    @example(archive=gzipped(tar_bytes([Member(name, data) for name, data in sandbox.valid_members])))
    def run(archive: bytes) -> None:
        sandbox.archive.write_bytes(archive)
        try:
            metadata = import_package(sandbox.archive, sandbox.store, Change(actor="fuzz"), force=True)
            outcome = f"imported {metadata.name} {metadata.version}"
        except StoreError as error:
            outcome = type(error).__name__
        count_cases(f"package archives imported (library): {outcome}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        check_store(sandbox, outside_before)

    run()
    assert any(o.startswith("imported") for o in outcomes), "no generated archive was valid: the mutations are too blunt"
    assert {"UnsafePackage", "IntegrityError"} <= outcomes.keys(), outcomes


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxgate", *args], capture_output=True, text=True,
                          timeout=DEADLINE_S, env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})


def cli_archives(sandbox: Sandbox) -> dict[str, bytes]:
    escape = str(sandbox.sentinel / "escaped")
    valid = [Member(name, data) for name, data in sandbox.valid_members]
    return {
        "traversal": gzipped(tar_bytes([*valid, Member("../../escaped", b"x")])),
        "absolute": gzipped(tar_bytes([Member(escape, b"x"), *valid])),
        "symlink-out": gzipped(tar_bytes([Member("iris/v1.0.0/model.onnx", kind=tarfile.SYMTYPE, link=escape),
                                          *valid[1:]])),
        "device": gzipped(tar_bytes([Member("manifest.json", kind=tarfile.CHRTYPE), *valid[1:]])),
        "truncated-gzip": gzipped(tar_bytes(valid))[:200],
        "non-utf8-name": gzipped(tar_bytes([*valid, Member("iris/v1.0.0/\udcff", b"x")])),
        "huge-declared-size": gzipped(tar_bytes([Member("manifest.json", b"{}",
                                                        declared_size=2**40)])),
    }


@pytest.mark.e2e
def test_cli_refuses_hostile_archives_in_one_line(sandbox: Sandbox) -> None:
    outside_before = sandbox.outside_listing()
    for label, archive in cli_archives(sandbox).items():
        path = sandbox.archive.with_name(f"{label}.tar.gz")
        path.write_bytes(archive)
        result = run_cli("import", str(path), "--store", str(sandbox.store.root), "--actor", "fuzz")
        count_cases("package archives imported (CLI)")
        assert result.returncode != 0, (label, result.stdout)
        assert "Traceback" not in result.stderr, (label, result.stderr)
        assert result.stderr.startswith("onnxgate import: error: ") and result.stderr.count("\n") == 1, \
            (label, result.stderr)
        check_store(sandbox, outside_before)


@pytest.mark.e2e
def test_a_valid_package_imports_through_the_cli(sandbox: Sandbox) -> None:
    """The fuzzed archives start from a package that really imports."""
    path = sandbox.archive.with_name("valid.tar.gz")
    path.write_bytes(gzipped(tar_bytes([Member(name, data) for name, data in sandbox.valid_members])))
    result = run_cli("import", str(path), "--store", str(sandbox.store.root), "--actor", "fuzz", "--force")
    assert result.returncode == 0, result.stderr
    assert sandbox.store.verify_version("iris", "v1.0.0").name == "iris"


# -- found by this suite (and fixed): each stays a case of its own ----------------------------------------------

def renamed_package(sandbox: Sandbox, name: str, version: str) -> bytes:
    """The valid package re-labelled as `name` `version` (manifest, metadata and member paths), hashes kept right."""
    members = []
    files = []
    for path, data in sandbox.valid_members:
        if path == "manifest.json":
            continue
        base = path.rsplit("/", 1)[1]
        if base == "metadata.json":
            metadata = json.loads(data)
            metadata.update(name=name, version=version)
            data = json.dumps(metadata).encode()
        new_path = f"{name}/{version}/{base}"
        members.append(Member(new_path, data))
        files.append({"path": new_path, "size": len(data), "sha256": sha256_bytes(data)})
    manifest = {"format": "onnxgate-package", "format_version": 1, "name": name, "version": version, "files": files}
    return gzipped(tar_bytes([Member("manifest.json", json.dumps(manifest).encode()), *members]))


def test_huge_pax_header_is_refused(sandbox: Sandbox) -> None:
    sandbox.archive.write_bytes(gzipped(tar_bytes([Member("pax", b"", tarfile.XHDTYPE, declared_size=2**40)])))
    with pytest.raises(StoreError):
        import_package(sandbox.archive, sandbox.store, Change(actor="fuzz"), force=True)


@pytest.mark.parametrize(("name", "version"), [
    pytest.param("iris\n", "v1.0.0", id="name-with-newline"),
    pytest.param("iris", "v1.0.0\n", id="version-with-newline"),
    pytest.param("iris", "v1.0.0-" + "a" * 300, id="over-long-version"),
])
def test_bad_names_are_refused(sandbox: Sandbox, name: str, version: str) -> None:
    sandbox.archive.write_bytes(renamed_package(sandbox, name, version))
    with pytest.raises(InvalidName):
        import_package(sandbox.archive, sandbox.store, Change(actor="fuzz"), force=True)
