"""`onnxgate audit verify [--public-key PEM]`: check the audit log (every line an entry, the hash chain, and that it
ends at the head registry.json records, signed when a public key is given) and name the first bad line.
`onnxgate audit replay [--restore]`: rebuild the registry from the audit log and compare it with registry.json, or
write it where registry.json is lost."""
from __future__ import annotations

import argparse
import sys

from modelstore.audit import AuditStatus
from modelstore.errors import RegistryMissing
from modelstore.registry import registry_json
from modelstore.replay import replay, same_registry
from onnxgate.commands.common import add_json_argument, add_store_argument, read_input_file, store_from
from onnxgate.output import print_json

MISMATCH_EXIT_CODE = 5


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="audit log tools")
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the audit log's entries, hash chain and anchored head")
    verify.add_argument("--public-key", metavar="PEM",
                        help="also require registry.json's audit_head to carry a valid Ed25519 signature by this key")
    add_store_argument(verify)
    add_json_argument(verify)
    verify.set_defaults(run=run_verify)
    again = actions.add_parser("replay", help="rebuild the registry from the audit log and compare it with "
                               "registry.json (--restore: write it where registry.json is missing)")
    again.add_argument("--restore", action="store_true", help="write the rebuilt registry if registry.json is missing")
    add_store_argument(again)
    add_json_argument(again)
    again.set_defaults(run=run_replay)


def run_verify(args: argparse.Namespace) -> int:
    registry = store_from(args).registry
    key = read_input_file(args.public_key, "public key") if args.public_key else None
    status = registry.verify_audit(key)
    warning = _unanchored(status, registry.display)
    if args.json:
        print_json({"ok": True, "lines": status.lines, "path": registry.audit.display, "anchored": status.head is not None,
                    "anchored_lines": status.head.count if status.head else None,
                    "signature_verified": status.signature_checked, **({"warning": warning} if warning else {})})
        return 0
    signed = ", signature verified" if status.signature_checked else ""
    if status.head is None:
        print(f"OK {registry.audit.display}: hash chain holds over {status.lines} line(s)")
    else:
        extra = status.lines - status.head.count
        after = f" (+{extra} withdrawn by an aborted write)" if extra else ""
        print(f"OK {registry.audit.display}: hash chain holds over {status.lines} line(s), ending at the head "
              f"{registry.display} records{after}{signed}")
    if warning:
        print(f"onnxgate audit: warning: {warning}", file=sys.stderr)
    return 0


def _unanchored(status: AuditStatus, registry: str) -> str | None:
    """Why a log that verifies still proves nothing about its end; None when it is anchored (or empty and new)."""
    if status.head is not None or status.lines == 0:
        return None
    if not status.registry_found:
        return (f"{registry} is missing, so nothing anchors the log's end: lines removed from its end would go "
                "unnoticed; `onnxgate audit replay --restore` rebuilds it with a head")
    return (f"{registry} records no audit_head (written before onnxgate recorded one), so lines removed from the "
            "log's end would go unnoticed; the next change to the registry anchors it")


def run_replay(args: argparse.Namespace) -> int:
    registry = store_from(args).registry
    registry.audit.verify()
    rebuilt = replay(registry.audit.entries())
    try:
        current = registry.read().state
    except RegistryMissing:
        if not args.restore:
            raise
        registry.restore(rebuilt)
        print(f"restored {registry.display} from {rebuilt.revision} audit entries")
        return 0
    same = same_registry(rebuilt, current)
    if args.json:
        print_json({"ok": same, "revision": current.revision, "replayed_revision": rebuilt.revision,
                    **({} if same else {"registry": registry_json(current), "replayed": registry_json(rebuilt)})})
    elif same:
        print(f"OK {registry.display}: the audit log's {rebuilt.revision} change(s) replay to it exactly")
    else:
        print(f"MISMATCH {registry.display} (revision {current.revision}) differs from the replay of the audit log "
              f"(revision {rebuilt.revision}): it was changed without an audit entry, or an entry was not applied")
    return 0 if same else MISMATCH_EXIT_CODE
