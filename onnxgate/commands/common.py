"""Arguments several commands share, and turning them into library objects."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from modelstore.layout import REGISTRY_URL_ENV, Store, open_store, resolve_artifacts_url, resolve_store_root
from modelstore.transitions import Change
from onnxgate.errors import UsageError


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR",
                        help="model store root (default: $ONNXGATE_STORE, else $MODELS_DIR, else ml/models)")
    parser.add_argument("--registry", metavar="URL",
                        help="keep the registry and audit log in this PostgreSQL database (postgresql://...) instead "
                        f"of the store root's registry.json and audit.log (default: ${REGISTRY_URL_ENV}, else the "
                        "store root); the versions' files, policy.toml and snapshots stay under the store root")
    parser.add_argument("--artifacts", metavar="URL",
                        help="keep versions' files in an object store, s3://bucket/prefix (default: "
                             "$ONNXGATE_ARTIFACTS_URL, else in the store directory); endpoint and credentials from "
                             "the AWS_* variables")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_change_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", help="who makes the change (default: the OS user)")
    parser.add_argument("--reason", help="why, for the audit log")


def add_dry_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="check the change against the gates of policy.toml and print the verdict; change nothing")


def store_from(args: argparse.Namespace) -> Store:
    return open_store(resolve_store_root(args.store), registry_url=registry_url_from(args),
                      artifacts_url=resolve_artifacts_url(getattr(args, "artifacts", None)))


def registry_url_from(args: argparse.Namespace) -> str | None:
    """--registry, else $ONNXGATE_REGISTRY_URL, else None (the file registry)."""
    return getattr(args, "registry", None) or os.environ.get(REGISTRY_URL_ENV) or None


def change_from(args: argparse.Namespace) -> Change:
    return Change(actor=args.actor, reason=args.reason)


def read_input_file(path: str, what: str) -> bytes:
    """Read a file the user named; a missing or unreadable one is a one-line usage error."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def non_negative_number(text: str) -> float:
    """An argument type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def missing_govern_extra(command: str, exc: ImportError) -> UsageError:
    """The usage error for a governance command run without the govern extra; any other ImportError is a bug."""
    if exc.name not in ("sklearn", "scipy"):
        raise exc
    return UsageError(f"{command} needs the govern extra ({exc.name} is not installed): pip install 'onnxgate[govern]'")
