"""`onnxgate snapshot create|list|restore`: save and restore the stable version of every model in every environment."""
from __future__ import annotations

import argparse

from modelstore.overview import snapshots
from modelstore.snapshots import create_snapshot, restore_snapshot
from onnxgate.commands.canary import print_outcome
from onnxgate.commands.common import (
    add_change_arguments,
    add_dry_run_argument,
    add_json_argument,
    add_store_argument,
    change_from,
    store_from,
)
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("snapshot", help="save or restore what every environment serves")
    actions = parser.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="save the stable version of every model in every environment")
    create.add_argument("--name", help="a label for the snapshot")
    add_change_arguments(create)
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="list snapshots, oldest first")
    listing.set_defaults(run=run_list)
    restore = actions.add_parser("restore", help="deploy every version a snapshot recorded (through the gates)",
                                 description="Make every model and environment of the snapshot serve the version it "
                                 "served then; running canaries there end. Models and environments deployed since "
                                 "are left as they are. Each version passes the environment's gates, as a deploy.")
    restore.add_argument("id", help="snapshot id (onnxgate snapshot list)")
    add_dry_run_argument(restore)
    add_change_arguments(restore)
    restore.set_defaults(run=run_restore)
    for action in (create, listing, restore):
        add_store_argument(action)
        add_json_argument(action)


def run_create(args: argparse.Namespace) -> int:
    outcome = create_snapshot(store_from(args), args.name, change_from(args))
    pairs = sum(len(envs) for envs in outcome.details["deployments"].values())
    print_outcome(outcome, args.json, f"snapshot {outcome.after} saved: {pairs} deployment(s)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    ordered = snapshots(store_from(args).registry.read().state)
    if args.json:
        print_json(dict(ordered))
        return 0
    print_table(["ID", "NAME", "CREATED", "ACTOR", "DEPLOYMENTS"],
                [[snapshot_id, record["name"] or "-", record["created_at"], record["actor"],
                  ", ".join(f"{model}@{env}={version}" for model, envs in sorted(record["deployments"].items())
                            for env, version in sorted(envs.items())) or "-"] for snapshot_id, record in ordered])
    return 0


def run_restore(args: argparse.Namespace) -> int:
    outcome = restore_snapshot(store_from(args), args.id, change_from(args), dry_run=args.dry_run)
    plan = outcome.details
    lines = [f"restored snapshot {args.id}: {len(plan['changes'])} change(s), {plan['unchanged']} unchanged"]
    lines += [f"  {c['model']} in {c['environment']}: {c['from'] or '-'} -> {c['to']}"
              + (f" (ends canary {c['ends_canary']})" if c.get("ends_canary") else "") for c in plan["changes"]]
    lines += [f"  {k['model']} in {k['environment']}: {k['version']} left as is (deployed since the snapshot)"
              for k in plan["left_as_is"]]
    print_outcome(outcome, args.json, "\n".join(lines), args.dry_run)
    return 0
