"""Where each subscriber is in the audit log, kept in <store>/.events/<subscriber>.json and replaced atomically after
every attempt: the sender resumes there after a restart, so an event is never lost, and is sent again only when the
sender stopped between a delivery and the cursor write that records it (at-least-once)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from modelstore.fileio import atomic_write
from modelstore.layout import EVENTS_DIR

MAX_SKIPPED_KEPT = 100
LOCK_FILE = "sender.lock"


class SkippedEvent(BaseModel):
    position: int
    event: str | None
    status: int | None
    error: str
    time: str


class Cursor(BaseModel):
    position: int = Field(default=0, ge=0, description="audit lines handled (delivered, filtered out or skipped)")
    delivered: int = Field(default=0, ge=0)
    failures: int = Field(default=0, ge=0, description="failed tries of the entry at `position`, in a row")
    client_errors: int = Field(default=0, ge=0, description="of those, refusals with a 4xx other than 408/429")
    next_try_epoch: float = Field(default=0.0, description="no try before this (backoff)")
    last_error: str | None = None
    last_delivered_at: str | None = None
    skipped: list[SkippedEvent] = Field(default_factory=list, description="the latest events given up on")

    def advance(self) -> None:
        self.position += 1
        self.failures = self.client_errors = 0
        self.next_try_epoch = 0.0
        self.last_error = None

    def skip(self, record: SkippedEvent) -> None:
        self.skipped = [*self.skipped, record][-MAX_SKIPPED_KEPT:]
        self.advance()


class CursorStore:
    """The cursors of one store's subscribers, and the sender's lock file beside them."""

    def __init__(self, store_root: Path) -> None:
        self.directory = Path(store_root) / EVENTS_DIR

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_FILE

    def path(self, subscriber: str) -> Path:
        return self.directory / f"{subscriber}.json"

    def read(self, subscriber: str) -> Cursor | None:
        """The subscriber's cursor; None when it has none yet (or an unreadable one: it starts as a new subscriber)."""
        try:
            return Cursor.model_validate_json(self.path(subscriber).read_bytes())
        except (FileNotFoundError, ValidationError):
            return None

    def write(self, subscriber: str, cursor: Cursor) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path(subscriber), cursor.model_dump_json(indent=2).encode() + b"\n", mode=0o600)
