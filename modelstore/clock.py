"""Timestamps as the store writes them (UTC, ISO 8601, whole seconds, `Z`), and their checks."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_after(seconds: float, start: str | None = None) -> str:
    """`seconds` after `start` (default: now), in the registry's format (2025-01-31T12:00:00Z)."""
    origin = datetime.fromtimestamp(epoch_seconds(start), UTC) if start else datetime.now(UTC)
    return format_time(origin + timedelta(seconds=seconds))


def epoch_seconds(iso_time: str) -> float:
    """A registry timestamp as Unix seconds (what the gateway's judge compares with its clock)."""
    moment = datetime.fromisoformat(iso_time)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _checked(value: str) -> str:
    try:
        epoch_seconds(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time such as 2025-01-31T12:00:00Z") from None
    return value


Timestamp = Annotated[str, AfterValidator(_checked)]
"""A string field that must parse as a time: a malformed date fails validation where it is read, not later."""
