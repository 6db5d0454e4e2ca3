"""`onnxgate events status`: each subscriber's cursor and backlog (events it wants that it has not received yet)."""
from __future__ import annotations

from modelstore.events import event_of
from modelstore.layout import Store
from webhooks.config import read_events_config
from webhooks.cursor import CursorStore
from webhooks.sender import AuditTail, parse_entry


def subscriber_status(store: Store) -> list[dict]:
    """One row per subscriber of events.toml (InvalidEventsConfig when it is broken); the audit log read through the
    store's registry."""
    config = read_events_config(store.root)
    if config is None:
        return []
    lines = AuditTail(store.registry).lines()
    cursors = CursorStore(store.root)
    rows = []
    for subscriber in config.subscribers:
        cursor = cursors.read(subscriber.name)
        position = cursor.position if cursor is not None else (len(lines) if subscriber.start == "end" else 0)
        pending = [parse_entry(raw) for raw in lines[position:]]
        backlog = sum(1 for entry in pending if entry is not None and subscriber.wants(event_of(entry)))
        rows.append({
            "subscriber": subscriber.name, "url": str(subscriber.url), "events": subscriber.events,
            "signed": subscriber.secret is not None or subscriber.secret_env is not None,
            "started": cursor is not None, "position": position, "log_lines": len(lines), "backlog": backlog,
            "delivered": cursor.delivered if cursor else 0, "failures": cursor.failures if cursor else 0,
            "last_error": cursor.last_error if cursor else None,
            "next_try_epoch": cursor.next_try_epoch if cursor and cursor.next_try_epoch else None,
            "last_delivered_at": cursor.last_delivered_at if cursor else None,
            "skipped": [record.model_dump() for record in cursor.skipped] if cursor else [],
        })
    return rows
