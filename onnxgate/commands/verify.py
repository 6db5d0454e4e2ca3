"""`onnxgate verify`: check a package archive, or a store version, against its manifest and sha256s."""
from __future__ import annotations

import argparse
from pathlib import Path

from modelstore.package import read_package
from onnxgate.commands.common import add_json_argument, add_store_argument, read_input_file, store_from
from onnxgate.errors import UsageError
from onnxgate.output import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="verify a package (.tar.gz) or a store version (NAME VERSION)")
    parser.add_argument("target", help="a package file, or a model name")
    parser.add_argument("version", nargs="?", help="with a model name: the version to verify (default: latest)")
    parser.add_argument("--public-key", metavar="PEM", help="also check the package's Ed25519 signature")
    add_store_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.target.endswith((".tar.gz", ".tgz")):
        key = read_input_file(args.public_key, "public key") if args.public_key else None
        package = read_package(Path(args.target), public_key=key)
        result = {"package": args.target, "name": package.manifest.name, "version": package.manifest.version,
                  "files": len(package.files), "signed": package.signed, "signature_verified": package.signature_checked}
    else:
        if args.public_key:
            raise UsageError("--public-key applies to package files, not store versions")
        store = store_from(args)
        metadata = store.verify_version(args.target, args.version or "latest")
        result = {"store": str(store.root), "name": metadata.name, "version": metadata.version,
                  "files": 1 + len(metadata.files), "sha256": metadata.model_sha256}
    if args.json:
        print_json({"ok": True, **result})
    else:
        extra = ", signature verified" if result.get("signature_verified") else ""
        print(f"OK {result['name']} {result['version']}: {result['files']} file(s) match their sha256{extra}")
    return 0
