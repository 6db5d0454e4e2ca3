"""Copy a whole store into another: a file store into the shared backends (a PostgreSQL registry, an object store),
or back into a directory for a backup (`onnxgate store migrate`).

Everything in the source is checked before anything is written: the audit chain against the head the registry
records, and every file of every version against metadata.json's sha256. Versions are copied first (an object store
verifies each upload by sha256), the registry and its audit log last and verbatim, so the chain's hashes and
`onnxgate audit verify` are the same on the target. A target that already holds anything else is refused; one that
holds exactly the source's content (a re-run), or some of its versions and no registry (a run that stopped before its
end), is completed, not refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from modelstore.audit import split_lines
from modelstore.errors import TargetNotEmpty
from modelstore.file_artifacts import METADATA_FILE, check_sha256, expected_files
from modelstore.layout import Store
from modelstore.metadata import ModelMetadata
from modelstore.writer import place_version

VersionKey = tuple[str, str]


@dataclass(frozen=True)
class MigrationReport:
    versions_copied: int
    versions_present: int
    audit_entries: int
    registry_copied: bool


def migrate(source: Store, target: Store) -> MigrationReport:
    document, log = source.registry.export_raw()
    source.registry.verify_audit()
    source_versions = {key: source.verify_version(*key) for key in all_versions(source)}
    present = _check_target(source, target, source_versions, document, log)
    for key, metadata in source_versions.items():
        if key not in present:
            place_version(target, metadata, read_verified_files(source, metadata))
    registry_copied = False
    if document is not None and target.registry.export_raw()[0] is None:
        target.registry.import_raw(document, log)
        registry_copied = True
    return MigrationReport(versions_copied=len(source_versions) - len(present), versions_present=len(present),
                           audit_entries=len(split_lines(log)), registry_copied=registry_copied)


def all_versions(store: Store) -> list[VersionKey]:
    return [(name, version) for name in store.list_models() for version in store.list_versions(name)]


def read_verified_files(store: Store, metadata: ModelMetadata) -> dict[str, bytes]:
    """Every file of the version, each checked against metadata.json's sha256 as read, and metadata.json's own bytes."""
    files = {file_name: check_sha256(store.read_file(metadata.name, metadata.version, file_name), digest,
                                     f"{metadata.name} {metadata.version} {file_name}")
             for file_name, digest in expected_files(metadata).items()}
    files[METADATA_FILE] = store.read_file(metadata.name, metadata.version, METADATA_FILE)
    return files


def _check_target(source: Store, target: Store, source_versions: dict[VersionKey, ModelMetadata],
                  document: bytes | None, log: bytes) -> set[VersionKey]:
    """The versions the target already holds, each identical to the source's; TargetNotEmpty if it holds anything
    else (another version, different files, another registry or audit log)."""
    target_document, target_log = target.registry.export_raw()
    target_has_registry = target_document is not None or split_lines(target_log)
    if target_has_registry and (target_document != document or split_lines(target_log) != split_lines(log)):
        raise TargetNotEmpty(f"{target.registry.display} already holds a registry or audit log other than the "
                                 "source's: migrate only into an empty target; nothing was written")
    present = set(all_versions(target))
    for name, version in sorted(present):
        source_metadata = source_versions.get((name, version))
        if source_metadata is None:
            raise TargetNotEmpty(f"the target already holds {name} {version}, which the source does not: migrate only "
                                 "into an empty target; nothing was written")
        same = (target.read_file(name, version, METADATA_FILE) == source.read_file(name, version, METADATA_FILE)
                and target.verify_version(name, version) == source_metadata)
        if not same:
            raise TargetNotEmpty(f"the target already holds {name} {version} with other content: migrate only into "
                                 "an empty target; nothing was written")
    return present
