"""Errors of evaluation. They are StoreErrors, so the CLI maps them in its one table (onnxgate/__main__.py)."""
from __future__ import annotations

from modelstore.errors import StoreError


class HoldoutError(StoreError):
    """A holdout file that cannot be evaluated: columns that do not match the signature, a missing label column, a
    label the model does not know, no rows, a value that is not a number."""


class NotEvaluable(StoreError):
    """A model evaluate cannot measure (not a classifier or regressor, a text model, outputs it cannot read)."""


class ChallengeError(StoreError):
    """A challenge that cannot be decided: the version is already the champion, a canary is running, a metric the
    models do not have, a classifier against a regressor."""


class ChallengerLost(StoreError):
    """The challenger did not beat the champion (its figures are recorded in the audit log); the message says why."""


class DriftDetected(StoreError):
    """`onnxgate drift` found the rows drifted from the version's reference (the report is printed first)."""
