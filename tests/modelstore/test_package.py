from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from modelstore import package as package_module
from modelstore.errors import IntegrityError, InvalidName, SignatureError, UnsafePackage
from modelstore.package import build_package, import_package, read_package
from modelstore.signing import generate_keypair

DEADLINE_S = 90


def test_round_trip_package_verify_import_into_a_fresh_store(make_store, tmp_path):
    source = make_store({"tiny": ["v1.0.0"]})
    archive = build_package(source, "tiny", "v1.0.0", tmp_path / "packages")
    assert archive.name == "tiny_v1.0.0.tar.gz"
    package = read_package(archive)
    assert package.manifest.name == "tiny" and set(package.files) == {"model.onnx", "metadata.json"}
    fresh = make_store(root=tmp_path / "fresh")
    metadata = import_package(archive, fresh)
    assert fresh.verify_version("tiny", "v1.0.0").model_sha256 == metadata.model_sha256
    assert fresh.model_path("tiny", "v1.0.0").read_bytes() == source.model_path("tiny", "v1.0.0").read_bytes()
    assert (fresh.model_dir("tiny") / "latest").is_symlink()


def test_packages_are_byte_identical_when_rebuilt(make_store, tmp_path):
    store = make_store({"tiny": ["v1.0.0"]})
    first = build_package(store, "tiny", "v1.0.0", tmp_path / "a").read_bytes()
    second = build_package(store, "tiny", "v1.0.0", tmp_path / "b").read_bytes()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["manifest.json", "tiny/v1.0.0/metadata.json", "tiny/v1.0.0/model.onnx"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}


def _rewrite(archive, tmp_path, mutate):
    """Copy an archive, letting `mutate(name, data)` change entries (return None to drop, a list to add)."""
    out = tmp_path / f"mutated-{archive.name}"
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            for name, payload, kind in mutate(member.name, data) or []:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                if kind == "symlink":
                    info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/passwd", 0
                dst.addfile(info, io.BytesIO(payload))
    return out


def test_tampered_model_in_package_is_refused(make_store, tmp_path):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    tampered = _rewrite(archive, tmp_path, lambda n, d: [(n, d + b"x" if n.endswith("model.onnx") else d, "file")])
    with pytest.raises(IntegrityError, match="tampered"):
        read_package(tampered)
    fresh = make_store(root=tmp_path / "fresh")
    with pytest.raises(IntegrityError):
        import_package(tampered, fresh)
    assert not fresh.model_dir("tiny").exists()


@pytest.mark.parametrize("evil", ["../../evil.txt", "/etc/evil", "tiny/v1.0.0/../../x"])
def test_path_traversal_entries_are_refused(make_store, tmp_path, evil):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    evil_archive = _rewrite(archive, tmp_path, lambda n, d: [(n, d, "file")] + (
        [(evil, b"pwned", "file")] if n == "manifest.json" else []))
    with pytest.raises(UnsafePackage, match="escape|traversal"):
        import_package(evil_archive, make_store(root=tmp_path / "fresh"))
    assert not (tmp_path / "evil.txt").exists()


def test_links_in_a_package_are_refused(make_store, tmp_path):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    linked = _rewrite(archive, tmp_path, lambda n, d: [(n, d, "file")] + (
        [("tiny/v1.0.0/passwd", b"", "symlink")] if n == "manifest.json" else []))
    with pytest.raises(UnsafePackage, match="link"):
        read_package(linked)


def test_unlisted_file_in_a_package_is_refused(make_store, tmp_path):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    extra = _rewrite(archive, tmp_path, lambda n, d: [(n, d, "file")] + (
        [("tiny/v1.0.0/extra.py", b"import os", "file")] if n == "manifest.json" else []))
    with pytest.raises(UnsafePackage, match="not listed"):
        read_package(extra)


def test_signed_package_verifies_only_with_the_right_key(make_store, tmp_path):
    private_pem, public_pem = generate_keypair()
    _, other_public = generate_keypair()
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path, signing_key=private_pem)
    assert read_package(archive, public_key=public_pem).signature_checked
    with pytest.raises(SignatureError, match="does not verify"):
        read_package(archive, public_key=other_public)
    unsigned = build_package(make_store({"tiny": ["v1.0.0"]}, root=tmp_path / "s2"), "tiny", "v1.0.0", tmp_path / "u")
    with pytest.raises(SignatureError, match="not signed"):
        read_package(unsigned, public_key=public_pem)


# -- caps on what an import reads: a package cannot make the importer read more than it may hold -------------------

GIB = 1 << 30
ZEROS_PER_GZIP_MEMBER = 64 << 20


def _tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT if kind == tarfile.REGTYPE else tarfile.GNU_FORMAT)


def _zeros_gzip(count: int) -> bytes:
    """`count` zero bytes as gzip members (concatenated gzip members decompress as one stream), built from one
    compressed 64 MiB block, so a 3 GiB bomb costs the test ~3 MB and one compression."""
    block = gzip.compress(bytes(ZEROS_PER_GZIP_MEMBER), compresslevel=9, mtime=0)
    full, rest = divmod(count, ZEROS_PER_GZIP_MEMBER)
    return block * full + (gzip.compress(bytes(rest), mtime=0) if rest else b"")


def write_bomb(path, *, declared: int, claimed: int, holds: int, pax: bool = False) -> None:
    """A package whose manifest declares model.onnx at `declared` bytes, whose tar header claims `claimed` bytes,
    followed by `holds` zero bytes (a pax header of `claimed` bytes instead, with `pax`)."""
    manifest = json.dumps({"format": "onnxgate-package", "format_version": 1, "name": "tiny", "version": "v1.0.0",
                           "files": [{"path": "tiny/v1.0.0/model.onnx", "size": declared, "sha256": "0" * 64}]})
    head = _tar_header("manifest.json", len(manifest)) + manifest.encode().ljust(-(-len(manifest) // 512) * 512, b"\0")
    if pax:
        head += _tar_header("././@PaxHeader", claimed, tarfile.XHDTYPE)
    else:
        head += _tar_header("tiny/v1.0.0/model.onnx", claimed)
    path.write_bytes(gzip.compress(head, mtime=0) + _zeros_gzip(holds))


# Runs the command as its own child and prints that child's peak RSS (KiB): a process forked straight from pytest
# would count the pages it shared with pytest (torch and all, in a full run) in its own ru_maxrss.
MEASURE_CHILD = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
try:
    _, status, usage = os.wait4(child.pid, 0)
except BaseException:
    child.kill()
    raise
child.returncode = os.waitstatus_to_exitcode(status)
print(usage.ru_maxrss, child.returncode)
"""


def run_measured(command: list[str], stderr_path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of one process running `command`."""
    with open(stderr_path, "w") as stderr_file:
        launcher = subprocess.run([sys.executable, "-c", MEASURE_CHILD, "--", *command], stdout=subprocess.PIPE,
                                  stderr=stderr_file, text=True, timeout=DEADLINE_S)
    assert launcher.returncode == 0, stderr_path.read_text()
    peak_rss_kib, returncode = map(int, launcher.stdout.split())
    return returncode, stderr_path.read_text(), peak_rss_kib


@pytest.mark.parametrize(("declared", "claimed", "pax", "code", "message"), [
    (3 * GIB, 3 * GIB, False, 1, "declares 3221225472 bytes of files, more than 2147483648"),
    (1000, 3 * GIB, False, 1, "is larger than 2147483648 bytes"),
    (1000, 3 * GIB, True, 1, "extended tar header claims 3221225472 bytes"),
    (1000, GIB + GIB // 2, False, 6, "does not match the manifest's size"),  # under every cap, but not as declared
])
def test_a_gzip_bomb_is_refused_from_headers_with_low_memory(tmp_path, make_store, declared, claimed, pax, code,
                                                             message):
    bomb = tmp_path / "tiny_v1.0.0.tar.gz"
    write_bomb(bomb, declared=declared, claimed=claimed, holds=3 * GIB, pax=pax)
    assert bomb.stat().st_size < 8 << 20
    store = make_store(root=tmp_path / "store")
    returncode, stderr, peak_rss_kib = run_measured(
        [sys.executable, "-m", "onnxgate", "import", str(bomb), "--store", str(store.root)], tmp_path / "stderr")
    assert returncode == code, stderr
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr, stderr
    assert peak_rss_kib < 500 * 1024, f"the import peaked at {peak_rss_kib // 1024} MiB"
    assert not store.model_dir("tiny").exists()


def test_the_expanded_stream_is_capped_under_tarfile(tmp_path, monkeypatch):
    """Whatever tarfile reads (headers, padding, members) counts against the cap on the decompressed stream."""
    monkeypatch.setattr(package_module, "MAX_UNPACKED_BYTES", 1 << 20)
    bomb = tmp_path / "tiny_v1.0.0.tar.gz"
    write_bomb(bomb, declared=1000, claimed=1000, holds=64 << 20)  # 1000 bytes, then zero blocks tarfile skips
    with pytest.raises((UnsafePackage, IntegrityError)):
        read_package(bomb)


def test_too_many_files_are_refused_before_any_is_read(tmp_path):
    files = [{"path": f"tiny/v1.0.0/f{i}", "size": 1, "sha256": "0" * 64} for i in range(10_001)]
    manifest = json.dumps({"format": "onnxgate-package", "format_version": 1, "name": "tiny", "version": "v1.0.0",
                           "files": files}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafePackage, match="more than 10000 files"):
        read_package(archive)


def test_the_manifest_comes_first(make_store, tmp_path):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    reordered = _rewrite(archive, tmp_path, lambda n, d: [(n, d, "file")] if n != "manifest.json" else [])
    with pytest.raises(UnsafePackage, match="first entry must be manifest.json"):
        read_package(reordered)


def _repackaged(archive, tmp_path, change_metadata) -> object:
    """The archive with metadata.json rewritten by `change_metadata(text)` and its manifest entry updated to match,
    so only the metadata's content is wrong."""
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    for entry in manifest["files"]:
        if entry["path"].endswith("/metadata.json"):
            data = members[entry["path"]] = change_metadata(members[entry["path"]].decode()).encode()
            entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    out = tmp_path / f"repackaged-{archive.name}"
    out.write_bytes(package_module._archive_bytes([("manifest.json", json.dumps(manifest).encode()),
                                                   *sorted(members.items())]))
    return out


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_package_with_non_finite_metrics_is_refused(make_store, tmp_path, value):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    def with_bad_metric(text: str) -> str:
        assert '"accuracy": 0.9' in text
        return text.replace('"accuracy": 0.9', f'"accuracy": {value}')

    bad = _repackaged(archive, tmp_path, with_bad_metric)
    fresh = make_store(root=tmp_path / "fresh")
    returncode, stderr, _ = run_measured([sys.executable, "-m", "onnxgate", "import", str(bad), "--store",
                                          str(fresh.root)], tmp_path / "stderr")
    assert returncode == 6, stderr
    assert stderr.count("\n") == 1 and "metrics.accuracy" in stderr and "finite" in stderr, stderr
    assert not fresh.model_dir("tiny").exists() and not (fresh.root / "registry.json").exists()


@pytest.mark.parametrize("name", ["tiny\n", "tiny\n\n"])
def test_a_package_whose_name_ends_in_a_newline_is_refused(make_store, tmp_path, name):
    archive = build_package(make_store({"tiny": ["v1.0.0"]}), "tiny", "v1.0.0", tmp_path)
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    manifest = json.loads(members["manifest.json"])
    manifest["name"] = name
    members["manifest.json"] = json.dumps(manifest).encode()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(package_module._archive_bytes(list(members.items())))
    fresh = make_store(root=tmp_path / "fresh")
    with pytest.raises(InvalidName, match="invalid model name"):
        import_package(bad, fresh)
    assert list(fresh.root.iterdir()) == []
