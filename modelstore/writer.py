"""Putting a new version into a store: all files land in a hidden temp directory, then one rename makes the version
appear whole; `latest` is swapped after; an object store then gets the files (each upload verified, metadata.json
last); and the registry records it last of all."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from modelstore.deployments import Change, register_version
from modelstore.errors import DuplicateVersion
from modelstore.fileio import fsync_dir, sha256_bytes
from modelstore.layout import METADATA_FILE, Store
from modelstore.metadata import ModelMetadata, metadata_json


def seal_metadata(metadata: ModelMetadata, model_bytes: bytes, extra_files: dict[str, bytes]) -> ModelMetadata:
    """Fill in the sha256 and size fields from the bytes that will be written."""
    return metadata.model_copy(update={
        "model_sha256": sha256_bytes(model_bytes),
        "model_size": len(model_bytes),
        "files": {name: sha256_bytes(data) for name, data in sorted(extra_files.items())},
    })


def write_version(store: Store, metadata: ModelMetadata, model_bytes: bytes,
                  extra_files: dict[str, bytes] | None = None, *, force: bool = False) -> ModelMetadata:
    extra_files = dict(extra_files or {})
    metadata = seal_metadata(metadata, model_bytes, extra_files)
    target = store.version_dir(metadata.name, metadata.version)
    if not force and (target.exists() or store.has_version(metadata.name, metadata.version)):
        raise DuplicateVersion(f"{metadata.name} {metadata.version} already exists in {store.root} (use --force to replace it)")
    files = {metadata.model_file: model_bytes, **extra_files, METADATA_FILE: metadata_json(metadata).encode()}
    place_version(store, metadata, files)
    return metadata


def place_version(store: Store, metadata: ModelMetadata, files: dict[str, bytes]) -> None:
    """Write a version's `files` (metadata.json among them) into the store: staged, renamed into place whole, `latest`
    swapped, then published to the store's artifact store (an object store verifies each upload)."""
    target = store.version_dir(metadata.name, metadata.version)
    model_dir = target.parent
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{metadata.version}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for file_name, data in files.items():
            _write_synced(staging / file_name, data)
        fsync_dir(staging)
        _move_into_place(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    store.update_latest(metadata.name)
    store.artifact_store.publish_version(metadata, target)


def publish(store: Store, metadata: ModelMetadata, model_bytes: bytes, extra_files: dict[str, bytes] | None = None,
            change: Change = Change(), *, force: bool = False) -> ModelMetadata:
    """Write the version directory and register it (with an audit entry)."""
    sealed = write_version(store, metadata, model_bytes, extra_files, force=force)
    register_version(store, sealed, change, force=force)
    return sealed


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _move_into_place(staging: Path, target: Path) -> None:
    if target.exists():
        retired = target.with_name(f".old-{target.name}-{uuid.uuid4().hex}")
        os.replace(target, retired)
        os.replace(staging, target)
        with contextlib.suppress(OSError):
            shutil.rmtree(retired)
    else:
        os.replace(staging, target)
    fsync_dir(target.parent)
