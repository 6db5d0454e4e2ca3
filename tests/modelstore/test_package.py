from __future__ import annotations

import io
import tarfile

import pytest

from modelstore.errors import IntegrityError, SignatureError, UnsafePackage
from modelstore.package import build_package, import_package, read_package
from modelstore.signing import generate_keypair


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
