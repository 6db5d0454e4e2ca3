"""What the ops API asks of parts it does not own: the gateway's live monitoring (the same code as GET /drift and
GET /quality answer with) and retraining (retrain/, which sits above the gateway: `onnxgate serve` hands its
implementation in, retrain/ops.py; without one the retraining routes answer 503)."""
from __future__ import annotations

from typing import Protocol

from modelstore.errors import Unavailable


class Monitoring(Protocol):
    async def drift_report(self, model: str, environment: str, version: str | None) -> dict:
        """The live drift report of the environment's stable version, or of `version`."""

    async def quality_report(self, model: str, environment: str, since: str | None) -> dict:
        """Live quality from captured predictions joined with their labels, over `since` (e.g. 7d)."""


class Retraining(Protocol):
    def jobs(self, model: str | None) -> list[dict]:
        """Job records, newest first."""

    def job(self, job_id: str) -> dict:
        """One job's record (a NotFound StoreError when there is none)."""

    def check(self, model: str) -> dict:
        """Which triggers fire now and why; changes nothing."""

    def start(self, model: str, actor: str, reason: str | None) -> dict:
        """Start a job in the background; its first record. A job of the model already running: InvalidTransition."""

    def close(self) -> None:
        """Stop running jobs and wait for them."""


class NoRetraining:
    """A gateway started without retraining (create_app called directly, not by `onnxgate serve`)."""

    def _refuse(self, *args: object) -> dict:
        raise Unavailable("retraining is not available in this gateway (`onnxgate serve` provides it, with the "
                          "retrain extra installed)")

    jobs = job = check = start = _refuse

    def close(self) -> None:
        pass
