"""Reproducible package archives (`<name>_<version>.tar.gz`) with a manifest, their verification, and safe import.

Archive layout, in this order: manifest.json, manifest.sig (if signed), then <name>/<version>/<file> sorted by path.
Regular files only; mode 0644, uid/gid 0, empty owner names, mtime 0; gzip header without name or timestamp. The
same version directory therefore always gives byte-identical archives.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError

from modelstore.deployments import Change, register_version
from modelstore.errors import DuplicateVersion, IntegrityError, UnsafePackage
from modelstore.file_artifacts import expected_files
from modelstore.fileio import sha256_bytes
from modelstore.layout import METADATA_FILE, Store
from modelstore.metadata import ModelMetadata
from modelstore.versions import check_name, check_version
from modelstore.writer import write_version

FORMAT = "onnxgate-package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
# Caps on what an import reads, checked on tar headers and the manifest before a file's bytes are read.
MAX_UNPACKED_BYTES = 2 << 30  # all files together (2 GiB): the package is verified in memory
MAX_MEMBER_BYTES = MAX_UNPACKED_BYTES
MAX_MEMBERS = 10_000
MAX_MANIFEST_BYTES = 4 << 20  # a manifest of MAX_MEMBERS entries is ~1.5 MB
MAX_EXTENSION_HEADER_BYTES = 64 << 10  # pax and GNU long-name headers, which tarfile reads whole
READ_CHUNK_BYTES = 1 << 20


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    size: int
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    name: str
    version: str
    files: list[ManifestFile]

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


@dataclass(frozen=True)
class VerifiedPackage:
    manifest: Manifest
    metadata: ModelMetadata
    files: dict[str, bytes]
    signed: bool
    signature_checked: bool


def package_file_name(name: str, version: str) -> str:
    return f"{check_name(name)}_{check_version(version)}.tar.gz"


def build_package(store: Store, name: str, version: str, out_dir: Path, *, signing_key: bytes | None = None) -> Path:
    """Verify the store version, then write its reproducible archive into out_dir; returns the archive's path."""
    metadata = store.verify_version(name, version)
    prefix = f"{name}/{metadata.version}"
    file_names = [*expected_files(metadata), METADATA_FILE]
    contents = {f"{prefix}/{file_name}": store.read_file(name, metadata.version, file_name) for file_name in file_names}
    manifest = Manifest(name=name, version=metadata.version, files=[
        ManifestFile(path=path, size=len(data), sha256=sha256_bytes(data)) for path, data in sorted(contents.items())
    ])
    manifest_bytes = manifest.to_bytes()
    members = [(MANIFEST, manifest_bytes)]
    if signing_key is not None:
        from modelstore.signing import sign

        members.append((SIGNATURE, sign(signing_key, manifest_bytes)))
    members.extend(sorted(contents.items()))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / package_file_name(name, metadata.version)
    target.write_bytes(_archive_bytes(members))
    return target


def _archive_bytes(members: list[tuple[str, bytes]]) -> bytes:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, data in members:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    gz_buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buffer, compresslevel=9, mtime=0) as gz:
        gz.write(tar_buffer.getvalue())
    return gz_buffer.getvalue()


def read_package(path: Path, *, public_key: bytes | None = None) -> VerifiedPackage:
    """Read an archive fully into memory and check it: safe member names, every file listed in the manifest with the
    right size and sha256, metadata.json consistent with the files, and the signature when a key is given."""
    members = _read_members(path)
    if MANIFEST not in members:
        raise UnsafePackage(f"{path}: no {MANIFEST} in the package")
    manifest = _parse_manifest(path, members[MANIFEST])
    prefix = f"{manifest.name}/{manifest.version}/"
    listed = {entry.path: entry for entry in manifest.files}
    extras = set(members) - set(listed) - {MANIFEST, SIGNATURE}
    if extras:
        raise UnsafePackage(f"{path}: files not listed in the manifest: {', '.join(sorted(extras))}")
    files: dict[str, bytes] = {}
    for entry_path, entry in listed.items():
        if not entry_path.startswith(prefix) or "/" in entry_path[len(prefix):]:
            raise UnsafePackage(f"{path}: manifest entry {entry_path!r} lies outside {prefix}")
        data = members.get(entry_path)
        if data is None:
            raise IntegrityError(f"{path}: {entry_path} is listed in the manifest but missing from the archive")
        if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
            raise IntegrityError(f"{path}: {entry_path} does not match the manifest's size/sha256: refusing a tampered package")
        files[entry_path[len(prefix):]] = data
    metadata = _check_metadata(path, manifest, files)
    signed = SIGNATURE in members
    if public_key is not None:
        from modelstore.signing import verify_signature

        if not signed:
            raise_signature_missing(path)
        verify_signature(public_key, members[MANIFEST], members[SIGNATURE], where=str(path))
    return VerifiedPackage(manifest, metadata, files, signed=signed, signature_checked=public_key is not None)


def raise_signature_missing(path: Path) -> None:
    from modelstore.errors import SignatureError

    raise SignatureError(f"{path}: a public key was given but the package is not signed")


def import_package(path: Path, store: Store, change: Change = Change(), *, force: bool = False,
                   public_key: bytes | None = None) -> ModelMetadata:
    """Verify a package and install its version into the store (atomically), then register it."""
    package = read_package(path, public_key=public_key)
    metadata = package.metadata
    if store.has_version(metadata.name, metadata.version) and not force:
        raise DuplicateVersion(f"{metadata.name} {metadata.version} already exists in {store.root} (use --force)")
    extra = {n: d for n, d in package.files.items() if n not in (metadata.model_file, METADATA_FILE)}
    sealed = write_version(store, metadata, package.files[metadata.model_file], extra, force=force)
    register_version(store, sealed, change, force=True,
                     signature_verified=package.signed and package.signature_checked)
    return sealed


def verify_store_version(store: Store, name: str, version: str) -> ModelMetadata:
    return store.verify_version(name, version)


class _BoundedStream:
    """The decompressed tar stream, refusing to expand past `limit` bytes: tarfile reads some headers (pax, GNU long
    names) whole into memory before any member is seen, so the cap sits under tarfile, not only on member sizes."""

    def __init__(self, raw: io.BufferedIOBase, path: Path, limit: int) -> None:
        self.raw, self.path, self.limit, self.total = raw, path, limit, 0
        self.name = str(path)  # what tarfile names the archive by

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or self.total + size > self.limit:
            raise UnsafePackage(f"{self.path}: the package expands to more than {self.limit} bytes (a compression "
                                "bomb?); refusing it")
        data = self.raw.read(size)
        self.total += len(data)
        return data


class _CheckedTarInfo(tarfile.TarInfo):
    """tarfile reads a pax or GNU long-name header's payload whole before yielding the member it describes: refuse
    one claiming more than MAX_EXTENSION_HEADER_BYTES, and sparse members (never in a package), first."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafePackage(f"{tarfile_.name}: entry {self.name!r} is a sparse file; packages hold "
                                "regular files only")
        if self.type not in tarfile.REGULAR_TYPES and self.size > MAX_EXTENSION_HEADER_BYTES:
            raise UnsafePackage(f"{tarfile_.name}: an extended tar header claims {self.size} bytes, more "
                                f"than {MAX_EXTENSION_HEADER_BYTES}; refusing the package")
        return super()._proc_member(tarfile_)


def _read_members(path: Path) -> dict[str, bytes]:
    """Stream the archive once: manifest.json first (bounded), then each file only after its tar header agrees with
    the manifest (listed, same size), so nothing larger than the manifest declares is ever read into memory."""
    members: dict[str, bytes] = {}
    listed: dict[str, int] | None = None
    total = 0
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(
                fileobj=_BoundedStream(raw, path, _stream_limit()), mode="r|", tarinfo=_CheckedTarInfo) as tar:
            for count, info in enumerate(tar, start=1):
                _check_member(path, info)
                if count > MAX_MEMBERS:
                    raise UnsafePackage(f"{path}: more than {MAX_MEMBERS} entries; refusing the package")
                if info.name in members:
                    raise UnsafePackage(f"{path}: duplicate entry {info.name!r}")
                total += info.size
                if total > MAX_UNPACKED_BYTES:
                    raise UnsafePackage(f"{path}: entries add up to more than {MAX_UNPACKED_BYTES} bytes unpacked; "
                                        "refusing the package")
                if listed is None:
                    if info.name != MANIFEST:
                        raise UnsafePackage(f"{path}: the first entry must be {MANIFEST}, found {info.name!r}")
                    if info.size > MAX_MANIFEST_BYTES:
                        raise UnsafePackage(f"{path}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
                elif info.name == SIGNATURE:
                    if info.size > MAX_MANIFEST_BYTES:
                        raise UnsafePackage(f"{path}: {SIGNATURE} is larger than {MAX_MANIFEST_BYTES} bytes")
                elif info.name not in listed:
                    raise UnsafePackage(f"{path}: files not listed in the manifest: {info.name}")
                elif info.size != listed[info.name]:
                    raise IntegrityError(f"{path}: {info.name} does not match the manifest's size/sha256: refusing "
                                         "a tampered package")
                members[info.name] = _read_member(tar, info)
                if listed is None:
                    listed = _declared_sizes(path, _parse_manifest(path, members[MANIFEST]))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise IntegrityError(f"{path}: no such package file") from None
        raise IntegrityError(f"{path}: not a readable .tar.gz package ({exc})") from None
    except MemoryError:
        raise UnsafePackage(f"{path}: not enough memory to read the package's files") from None
    return members


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:
        return b""
    chunks, left = [], info.size
    while left > 0:
        chunk = handle.read(min(left, READ_CHUNK_BYTES))
        if not chunk:
            raise EOFError(f"{info.name} is cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _declared_sizes(path: Path, manifest: Manifest) -> dict[str, int]:
    """The manifest's files and sizes, refused before any file is read when they exceed the package caps."""
    if len(manifest.files) > MAX_MEMBERS:
        raise UnsafePackage(f"{path}: the manifest lists more than {MAX_MEMBERS} files; refusing the package")
    declared = sum(entry.size for entry in manifest.files)
    if declared > MAX_UNPACKED_BYTES:
        raise UnsafePackage(f"{path}: the manifest declares {declared} bytes of files, more than {MAX_UNPACKED_BYTES}; "
                            "refusing the package")
    return {entry.path: entry.size for entry in manifest.files}


def _stream_limit() -> int:
    """Bytes the decompressed tar may hold: the files' cap plus a header and padding per entry and the end blocks."""
    return MAX_UNPACKED_BYTES + 2 * MAX_MANIFEST_BYTES + (MAX_MEMBERS + 2) * 2 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE


def _check_member(path: Path, info: tarfile.TarInfo) -> None:
    if not info.isfile():
        kind = "link" if info.issym() or info.islnk() else "directory" if info.isdir() else "special file"
        raise UnsafePackage(f"{path}: entry {info.name!r} is a {kind}; packages hold regular files only")
    pure = PurePosixPath(info.name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in info.name or not info.name:
        raise UnsafePackage(f"{path}: entry {info.name!r} would escape the store (path traversal); refusing the package")
    if info.size > MAX_MEMBER_BYTES:
        raise UnsafePackage(f"{path}: entry {info.name!r} is larger than {MAX_MEMBER_BYTES} bytes")


def _parse_manifest(path: Path, raw: bytes) -> Manifest:
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise UnsafePackage(f"{path}: invalid {MANIFEST}: {exc.errors()[0]['msg']}") from None
    if manifest.format != FORMAT or manifest.format_version != FORMAT_VERSION:
        raise UnsafePackage(f"{path}: unsupported package format {manifest.format} v{manifest.format_version}")
    check_name(manifest.name)
    check_version(manifest.version)
    return manifest


def _check_metadata(path: Path, manifest: Manifest, files: dict[str, bytes]) -> ModelMetadata:
    if METADATA_FILE not in files:
        raise UnsafePackage(f"{path}: no {METADATA_FILE} in the package")
    try:
        metadata = ModelMetadata.model_validate_json(files[METADATA_FILE])
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise IntegrityError(f"{path}: invalid {METADATA_FILE} at {location}: {first['msg']}") from None
    if (metadata.name, metadata.version) != (manifest.name, manifest.version):
        raise IntegrityError(f"{path}: metadata says {metadata.name} {metadata.version}, manifest says "
                             f"{manifest.name} {manifest.version}")
    expected = {metadata.model_file: metadata.model_sha256, **metadata.files}
    for file_name, digest in expected.items():
        data = files.get(file_name)
        if data is None or sha256_bytes(data) != digest:
            raise IntegrityError(f"{path}: {file_name} does not match the sha256 in {METADATA_FILE}")
    return metadata


def extract_to_directory(path: Path, destination: Path) -> Path:
    """Verify, then write the version's files under destination/<name>/<version>/ (for tools that want files)."""
    package = read_package(path)
    target = destination / package.manifest.name / package.manifest.version
    with tempfile.TemporaryDirectory(dir=destination) as tmp:
        staging = Path(tmp) / "v"
        staging.mkdir()
        for file_name, data in package.files.items():
            (staging / file_name).write_bytes(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target
