"""Retraining as the ops API offers it (gateway/admin/retraining.py's `Retraining`, which this implements; the CLI
hands it to the gateway, which cannot import retrain/): list and read jobs, check triggers, and start a job in the
background the way `onnxgate retrain run` runs one, answering with its id at once."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from modelstore.errors import Unavailable
from modelstore.layout import Store
from modelstore.versions import check_name
from retrain.errors import JobNotFound
from retrain.records import JobStore

log = logging.getLogger("onnxgate.retrain")
RECORD_WAIT_S = 30.0
"""How long `start` waits for the job's first record (written as soon as the job holds the model's lock)."""


class RetrainOperations:
    def __init__(self, store_root: Path) -> None:
        self.store = Store(Path(store_root))
        self.jobs_store = JobStore(self.store.root)
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def jobs(self, model: str | None) -> list[dict]:
        if model is not None:
            check_name(model)
        return [record.model_dump(mode="json") for record in self.jobs_store.jobs(model)]

    def job(self, job_id: str) -> dict:
        return self.jobs_store.read(job_id).model_dump(mode="json")

    def check(self, model: str) -> dict:
        with retrain_extra():
            from retrain.config import read_config
            from retrain.triggers import check
        settings = read_config(self.store.root).model(check_name(model))
        return check(self.store, model, settings, self.jobs_store.last(model), time.time()).as_json()

    def start(self, model: str, actor: str, reason: str | None) -> dict:
        """Start a manual job of `model` on a thread; return its record once written. JobBusy when one is running."""
        with retrain_extra():
            from retrain.config import read_config
            from retrain.job import JobContext, run_job
            from retrain.triggers import manual_trigger
        settings = read_config(self.store.root).model(check_name(model))
        job_id = self.jobs_store.new_id(model, time.time())
        trigger = manual_trigger(f"requested through the ops API by {actor}" + (f": {reason}" if reason else ""))
        decided = threading.Event()
        failed: list[BaseException] = []

        def decide(_last: object) -> object:
            decided.set()
            return trigger

        def work() -> None:
            try:
                run_job(JobContext(self.store, model, settings, stop=self.stop, actor=actor, job_id=job_id), decide)
            except Exception as exc:  # noqa: BLE001 - JobBusy goes back to the caller; anything else is logged
                failed.append(exc)
                if decided.is_set():
                    log.error("retraining job %s: %s", job_id, exc)
            finally:
                decided.set()

        thread = threading.Thread(target=work, name=f"retrain-{job_id}")
        self._threads = [each for each in self._threads if each.is_alive()] + [thread]
        thread.start()
        decided.wait()
        deadline = time.monotonic() + RECORD_WAIT_S
        while True:
            if failed and not self.jobs_store.record_path(job_id).exists():
                raise failed[0]
            try:
                return self.job(job_id)
            except JobNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop running jobs (their training command is killed: the job ends abandoned) and wait for them."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout_s)


@contextlib.contextmanager
def retrain_extra() -> Iterator[None]:
    """Around imports of retraining modules that need the retrain extra (croniter, governance's scikit-learn)."""
    try:
        yield
    except ImportError as exc:
        raise Unavailable(f"retraining needs the retrain extra ({exc.name} is not installed): "
                          "pip install 'onnxgate[retrain]'") from None
