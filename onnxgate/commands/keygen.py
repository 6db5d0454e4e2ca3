"""`onnxgate keygen`: an Ed25519 key pair for signing packages and the audit head."""
from __future__ import annotations

import argparse
from pathlib import Path

from modelstore.fileio import atomic_write
from modelstore.signing import generate_keypair
from onnxgate.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keygen", help="make an Ed25519 key pair (PREFIX.key private, PREFIX.pub public)")
    parser.add_argument("prefix", help="path prefix, e.g. keys/release")
    parser.add_argument("--force", action="store_true", help="overwrite existing key files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    private_path, public_path = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    if not args.force and (private_path.exists() or public_path.exists()):
        raise UsageError(f"{private_path} or {public_path} exists; use --force to overwrite")
    private_pem, public_pem = generate_keypair()
    # a new file renamed over the old one: the private key is 0600 even where --force replaces a key that was not
    atomic_write(private_path, private_pem, mode=0o600)
    atomic_write(public_path, public_pem)
    print(f"wrote {private_path} (keep it secret) and {public_path}")
    return 0
