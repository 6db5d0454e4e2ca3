"""`onnxgate status`: what each environment serves, from registry.json. A deployment entry that does not validate
is reported as an error (exit code 5) after the valid ones."""
from __future__ import annotations

import argparse

from modelstore.errors import InvalidEntry
from modelstore.registry import RegistryData
from onnxgate.commands.common import add_json_argument, add_store_argument, store_from
from onnxgate.output import print_json, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="show the deployed version of every model per environment")
    parser.add_argument("--env", metavar="ENV", help="only this environment")
    add_json_argument(parser)
    add_store_argument(parser)
    parser.set_defaults(run=run)


def status_rows(data: RegistryData, environment: str | None = None) -> list[dict]:
    rows = []
    for model, by_env in sorted(data.deployments.items()):
        for env, deployment in sorted(by_env.items()):
            if environment is not None and env != environment:
                continue
            rows.append({
                "model": model,
                "environment": env,
                "version": deployment.version,
                "deployed_at": deployment.deployed_at,
                "status": deployment.status,
                "canary": f"{deployment.canary.version} ({deployment.canary.weight:g}%)" if deployment.canary else None,
                "shadow": f"{deployment.shadow.version} ({deployment.shadow.weight:g}%)" if deployment.shadow else None,
                "last_rollback": rollback_text(deployment.last_rollback),
            })
    return rows


def rollback_text(rollback: dict | None) -> str | None:
    """'v1.2.0->v1.0.0 canary (latency) 2026-01-31T12:00:00Z' for the table; the JSON output has the whole record."""
    if not rollback:
        return None
    causes = ",".join(rollback.get("causes") or []) or "manual"
    return f"{rollback['from']}->{rollback['to']} {rollback['kind']} ({causes}) {rollback['at']}"


def run(args: argparse.Namespace) -> int:
    data = store_from(args).registry.read().state
    rows = status_rows(data, args.env)
    if args.json:
        print_json(rows)
    elif not rows:
        print("nothing deployed" + (f" to {args.env}" if args.env else ""))
    else:
        headers = ["model", "environment", "version", "deployed_at", "status"]
        headers += [column for column in ("canary", "shadow", "last_rollback") if any(row[column] for row in rows)]
        print_table(headers, [[row[h] for h in headers] for row in rows])
    invalid = [entry for entry in data.invalid
               if entry.section == "deployments" and (args.env is None or entry.key in (args.env, None))]
    if invalid:  # set aside when the registry was read: shown as an error, never silently left out
        raise InvalidEntry("; ".join(entry.describe() for entry in invalid))
    return 0
