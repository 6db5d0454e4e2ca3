"""How a change's gate verdicts print: one line per version checked, one indented line per check."""
from __future__ import annotations

from modelstore.transitions import Outcome


def gate_lines(outcome: Outcome) -> list[str]:
    lines = []
    for verdict in outcome.checks:
        lines.append(f"gates for {verdict['model']} {verdict['version']} in {verdict['environment']} "
                     f"({verdict['role']}): passed")
        for check in verdict["checks"]:
            source = f" ({check['source']})" if check.get("source") else ""
            lines.append(f"  ok  {check['check']} = {_value(check['value'])}{source}, needs {check['limit']}")
    return lines


def with_verdict(outcome: Outcome, text: str, dry_run: bool) -> str:
    lines = gate_lines(outcome)
    if dry_run:
        return "\n".join([f"dry run, nothing was changed; the change would be: {text}",
                          *(lines or ["no gates apply to it"])])
    return "\n".join([text, *lines])


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and "status" in value:
        return f"{value['status']} by {', '.join(value['approvers']) or 'nobody'}"
    return str(value)
