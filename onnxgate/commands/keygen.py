"""`onnxgate keygen`: an Ed25519 key pair for signing packages."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

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
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)
    print(f"wrote {private_path} (keep it secret) and {public_path}")
    return 0
