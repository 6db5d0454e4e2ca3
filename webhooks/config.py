"""events.toml at the store root: who receives the store's audit events, which ones, signed with what, and how the
sender retries.

    [sender]                       # optional; these are the defaults
    timeout_s = 5                  # one POST
    backoff_initial_s = 1          # after the first failure; doubled after each next one ...
    backoff_max_s = 300            # ... up to this
    client_error_attempts = 3      # a 4xx other than 408/429 this many times: the event is recorded as skipped

    [[subscribers]]
    name = "ops-chat"              # names the subscriber's cursor: keep it when the URL changes
    url = "https://hooks.example.com/T000/B000"
    events = ["deployment_completed", "deployment_failed"]   # or ["*"] (the default)
    secret_env = "OPS_CHAT_SECRET" # or secret = "..."; either signs each body (X-Onnxgate-Signature)
    start = "end"                  # a subscriber without a cursor: only events after the sender first sees it
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from modelstore.events import LIFECYCLE_EVENTS
from modelstore.toml_model import parse_toml_model
from webhooks.errors import InvalidEventsConfig

CONFIG_FILE = "events.toml"
ALL_EVENTS = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SenderSettings(_Strict):
    timeout_s: float = Field(default=5.0, gt=0, le=300, description="seconds one POST may take")
    backoff_initial_s: float = Field(default=1.0, gt=0, description="wait after a subscriber's first failure")
    backoff_max_s: float = Field(default=300.0, gt=0, description="the longest wait between two tries")
    client_error_attempts: int = Field(default=3, ge=1, description="tries of an event the subscriber refuses with a "
                                       "4xx other than 408/429 before it is recorded as skipped")
    poll_s: float = Field(default=1.0, gt=0, le=60, description="how often the audit log is looked at")

    def backoff_s(self, failures: int) -> float:
        """The wait after `failures` failures in a row (1 or more): doubling from backoff_initial_s, capped."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** min(failures - 1, 32))


class Subscriber(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="names the subscriber's cursor")
    url: HttpUrl
    events: list[str] = Field(default_factory=lambda: [ALL_EVENTS], min_length=1)
    secret: str | None = Field(default=None, min_length=1, repr=False)
    secret_env: str | None = Field(default=None, min_length=1, description="an environment variable holding the secret")
    start: Literal["end", "beginning"] = Field(default="end", description="where a subscriber without a cursor starts: "
                                               "after the events already logged (end), or at the first one")

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != ALL_EVENTS and name not in LIFECYCLE_EVENTS:
                close = difflib.get_close_matches(name, sorted(LIFECYCLE_EVENTS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (one of {', '.join(sorted(LIFECYCLE_EVENTS))}, or '*')"
                raise ValueError(f"unknown event {name!r}{hint}")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> Subscriber:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give secret or secret_env, not both")
        return self

    def wants(self, event: str | None) -> bool:
        return ALL_EVENTS in self.events or event in self.events

    def signing_key(self) -> bytes | None:
        """The HMAC key; InvalidEventsConfig when secret_env names a variable that is not set."""
        if self.secret_env is None:
            return self.secret.encode() if self.secret is not None else None
        value = os.environ.get(self.secret_env)
        if not value:
            raise InvalidEventsConfig(f"{CONFIG_FILE}: subscriber {self.name!r}: environment variable "
                                      f"{self.secret_env} (secret_env) is not set")
        return value.encode()


class EventsConfig(_Strict):
    sender: SenderSettings = Field(default_factory=SenderSettings)
    subscribers: list[Subscriber] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> EventsConfig:
        names = [subscriber.name for subscriber in self.subscribers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"subscriber names must be unique: {', '.join(duplicates)} appear more than once")
        return self


def read_events_config(store_root: Path, display: str | None = None) -> EventsConfig | None:
    """events.toml of the store, None when there is none; InvalidEventsConfig naming the line and field when it is
    broken, or when a secret_env variable is not set."""
    path = Path(store_root) / CONFIG_FILE
    source = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidEventsConfig(f"{source}: cannot be read ({exc.strerror})") from None
    config = parse_toml_model(raw, source, EventsConfig, InvalidEventsConfig, _suggestion)
    for subscriber in config.subscribers:
        subscriber.signing_key()
    return config


def _suggestion(location: tuple[str, ...]) -> str:
    """' (did you mean ...?)' for an unknown field close to a known one of its table."""
    table = {"sender": SenderSettings, "subscribers": Subscriber}.get(location[0]) if len(location) > 1 else EventsConfig
    if table is None:
        return ""
    close = difflib.get_close_matches(location[-1], list(table.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
