"""`onnxgate audit verify`: check the audit log's hash chain and name the first line where it breaks.
`onnxgate audit replay [--restore]`: rebuild the registry from the audit log and compare it with registry.json, or
write it where registry.json is lost."""
from __future__ import annotations

import argparse

from modelstore.errors import RegistryMissing
from modelstore.registry import registry_json
from modelstore.replay import replay, same_registry
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json

MISMATCH_EXIT_CODE = 5


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="audit log tools")
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the hash chain of the audit log")
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
    log = store_from(args).registry.audit
    lines = log.verify()
    if args.json:
        print_json({"ok": True, "lines": lines, "path": str(log.path)})
    else:
        print(f"OK {log.path}: hash chain holds over {lines} line(s)")
    return 0


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
