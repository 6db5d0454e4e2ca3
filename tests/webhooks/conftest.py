"""Event sender fixtures: events.toml written for a receiver on loopback (fast retries), a store with a history, and
the audit log as the events a subscriber should receive."""
from __future__ import annotations

from modelstore.audit import AuditLog
from modelstore.events import event_of
from modelstore.layout import Store
from tests.factories import deploy_version, publish_classifier

FAST = "[sender]\npoll_s = 0.05\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.2\ntimeout_s = 10\n"


def subscriber(name: str, url: str, *, events: str = '["*"]', secret: str | None = None, start: str = "beginning") -> str:
    signed = f'secret = "{secret}"\n' if secret else ""
    return f'\n[[subscribers]]\nname = "{name}"\nurl = "{url}"\nevents = {events}\nstart = "{start}"\n{signed}'


def write_events(store: Store, *subscribers: str) -> None:
    (store.root / "events.toml").write_text(FAST + "".join(subscribers))


def logged(store: Store) -> list[tuple[int, str | None, bytes]]:
    """(1-based position, event, raw line) of every audit entry."""
    lines = [line for line in store.audit_path.read_bytes().split(b"\n") if line.strip()]
    return [(position, event_of(entry), line)
            for position, (entry, line) in enumerate(zip(AuditLog(store.audit_path).entries(), lines, strict=True),
                                                     start=1)]


def make_history(store: Store) -> None:
    publish_classifier(store, "iris", "v1.0.0", seed=1)
    publish_classifier(store, "iris", "v2.0.0", seed=2)
    deploy_version(store, "iris", "v1.0.0")
    deploy_version(store, "iris", "v2.0.0")
