"""What a subscriber receives for one audit entry: a JSON body (the entry, its event, its place in the log and a `text`
line that Slack-compatible webhooks display) and the headers that sign and identify it."""
from __future__ import annotations

import hashlib
import hmac

import orjson

SIGNATURE_HEADER = "X-Onnxgate-Signature"
EVENT_HEADER = "X-Onnxgate-Event"
DELIVERY_HEADER = "X-Onnxgate-Delivery"
"""The sha256 of the entry's audit line: the same on every retry, so a receiver can drop a duplicate (delivery is
at-least-once)."""


def event_text(event: str | None, entry: dict) -> str:
    """One line a person reads in a chat channel."""
    subject = " ".join(part for part in (entry.get("model"), entry.get("after") or entry.get("before")) if part)
    where = f" in {entry['environment']}" if entry.get("environment") else ""
    change = ""
    if entry.get("before") and entry.get("after") and entry["before"] != entry["after"]:
        change = f" ({entry['before']} -> {entry['after']})"
    reason = f": {entry['reason']}" if entry.get("reason") else ""
    return f"onnxgate: {event or entry.get('action')}: {subject or 'store'}{where}{change} by {entry.get('actor')}{reason}"


def payload_body(entry: dict, event: str | None, position: int, delivery_id: str) -> bytes:
    """`position`: the entry's 1-based line in the audit log."""
    return orjson.dumps({"event": event, "position": position, "id": delivery_id, "entry": entry,
                         "text": event_text(event, entry)})


def signature(key: bytes, body: bytes) -> str:
    """The X-Onnxgate-Signature value: `sha256=` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(key: bytes, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): the header matches the body, compared in constant time."""
    return header is not None and hmac.compare_digest(signature(key, body), header)


def request_headers(body: bytes, event: str | None, delivery_id: str, key: bytes | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "onnxgate-events", EVENT_HEADER: event or "",
               DELIVERY_HEADER: delivery_id}
    if key is not None:
        headers[SIGNATURE_HEADER] = signature(key, body)
    return headers
