"""Errors of retraining. They are StoreErrors, so the CLI maps them in its one table (onnxgate/__main__.py)."""
from __future__ import annotations

from modelstore.errors import InvalidTransition, NotFound, StoreError


class InvalidRetrainConfig(StoreError):
    """retrain.toml cannot be read, parsed or validated (the message names the line and field), or names no such
    model."""


class JobFailed(StoreError):
    """A retraining job ended failed (or abandoned); its record says why."""


class JobRejected(StoreError):
    """A retraining job's new version did not beat the champion, or the gates refused its canary."""


class RetrainNotConfigured(InvalidRetrainConfig, NotFound):
    """The store has no retrain.toml, or it has no table for the model."""


class JobBusy(InvalidTransition):
    """Another process holds the model's retraining lock (a job is running): a conflict with the job already
    running."""


class JobNotFound(NotFound):
    """No job record with that id."""
