"""A version's files as the ops API hands them to remote loaders (the Node loader's `openStore(url)`): the listing of
every version with what a client checks downloads against (metadata.json's own sha256 and the sha256 it records for
each file), and the bytes of one listed file. Bytes are served as the store holds them: the client verifies them, as
it does from a directory, so a tampered file is refused where it would be loaded."""
from __future__ import annotations

from gateway.errors import UnknownFile
from modelstore.backends import ArtifactStore
from modelstore.errors import StoreError
from modelstore.fileio import sha256_bytes
from modelstore.layout import METADATA_FILE
from modelstore.metadata import ModelMetadata, parse_metadata
from modelstore.versions import shown


def listed_files(metadata: ModelMetadata) -> dict[str, str]:
    """File name -> sha256 for every file metadata.json lists, the model file first."""
    return {metadata.model_file: metadata.model_sha256, **metadata.files}


def version_entry(store: ArtifactStore, model: str, version: str) -> dict:
    """One version's manifest: metadata.json's sha256 and size, and the file digests it records; or why it has none."""
    try:
        raw = store.read_file(model, version, METADATA_FILE)
        metadata = parse_metadata(raw, f"{model} {version}: {METADATA_FILE}")
    except StoreError as exc:
        return {"version": version, "error": str(exc)}
    return {"version": version, "metadata": {"sha256": sha256_bytes(raw), "size": len(raw)},
            "model_file": metadata.model_file, "model_size": metadata.model_size, "files": listed_files(metadata)}


def version_listing(store: ArtifactStore, model: str) -> dict:
    """Every version of `model`, oldest first; ModelNotFound for an unknown model."""
    versions = store.list_versions(model)
    return {"model": model, "latest": versions[-1] if versions else None,
            "versions": [version_entry(store, model, version) for version in versions]}


def version_file(store: ArtifactStore, model: str, version: str, file_name: str) -> bytes:
    """The stored bytes of metadata.json or of a file it lists; UnknownFile for any other name."""
    metadata = store.read_metadata(model, version)  # ModelNotFound / VersionNotFound first
    if file_name != METADATA_FILE and file_name not in listed_files(metadata):
        raise UnknownFile(f"{model} {version} has no file {shown(file_name)}: only metadata.json and the files it "
                          "lists are served")
    return store.read_file(model, metadata.version, file_name)
