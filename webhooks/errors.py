"""Errors of the event sender. They are StoreErrors, so the CLI maps them in its one table (onnxgate/__main__.py)."""
from __future__ import annotations

from modelstore.errors import StoreError


class InvalidEventsConfig(StoreError):
    """events.toml cannot be read, parsed or validated (the message names the line and field)."""


class SenderBusy(StoreError):
    """Another process (a gateway, `onnxgate events run`) is the store's event sender."""
