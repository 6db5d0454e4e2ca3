"""`onnxgate store migrate --from DIR --to-registry URL --to-artifacts URL`: copy a file store (every version's
files, the registry, the audit chain) into the shared backends; `--from-registry URL --from-artifacts URL --to DIR`
copies them back into a directory (a backup). The library does the work: modelstore.migrate."""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelstore.layout import Store, open_store
from modelstore.migrate import migrate
from onnxgate.commands.common import add_json_argument
from onnxgate.errors import UsageError
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("store", help="whole-store tools")
    actions = parser.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    copy = actions.add_parser("migrate", help="copy a store (versions, registry, audit chain) into an empty one, "
                              "e.g. a file store into PostgreSQL and an object store, or back into a directory")
    for side, verb in (("from", "read"), ("to", "write")):
        copy.add_argument(f"--{side}", metavar="DIR", dest=f"{side}_dir",
                          help=f"{verb} a store directory (its registry.json and audit.log unless --{side}-registry, "
                          f"its versions' files unless --{side}-artifacts)")
        copy.add_argument(f"--{side}-registry", metavar="URL", help=f"{verb} the registry in this PostgreSQL database")
        copy.add_argument(f"--{side}-artifacts", metavar="URL",
                          help=f"{verb} versions' files in this object store, s3://bucket/prefix (endpoint and "
                          "credentials from the AWS_* variables)")
    add_json_argument(copy)
    copy.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    with _opened(args, "from") as source, _opened(args, "to") as target:
        report = migrate(source, target)
    if args.json:
        print_json({"ok": True, "versions_copied": report.versions_copied,
                    "versions_already_there": report.versions_present, "audit_entries": report.audit_entries,
                    "registry_copied": report.registry_copied})
        return 0
    already = f" ({report.versions_present} already there)" if report.versions_present else ""
    registry = "registry and audit log copied" if report.registry_copied else "registry and audit log already there"
    print(f"OK {report.versions_copied} version(s) copied{already}, {report.audit_entries} audit entries; {registry}")
    return 0


@contextlib.contextmanager
def _opened(args: argparse.Namespace, side: str) -> Iterator[Store]:
    """One side's store; with no directory, a temporary root holds what an object store's side needs locally (the
    verified cache, the staged copies) and goes when the command ends."""
    directory = getattr(args, f"{side}_dir")
    registry, artifacts = getattr(args, f"{side}_registry"), getattr(args, f"{side}_artifacts")
    if directory is None and not (registry and artifacts):
        raise UsageError(f"say where to {'read' if side == 'from' else 'write'}: --{side} DIR, or both "
                         f"--{side}-registry URL and --{side}-artifacts URL")
    with contextlib.ExitStack() as stack:
        root = Path(directory) if directory else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if side == "from" and directory and not root.is_dir():
            raise UsageError(f"--from {directory}: no such directory")
        root.mkdir(parents=True, exist_ok=True)
        store = open_store(root, registry_url=registry, artifacts_url=artifacts)
        stack.callback(store.close)
        yield store
