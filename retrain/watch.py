"""The unattended loop: every interval, check each configured model's triggers and run a job for the first that
fires. One log line per check. A job that fails is recorded and the loop goes on; `stop` (set on SIGTERM) ends the
loop after the current job, which finishes (validation, deploying) or is abandoned (training) and says which."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from modelstore.errors import StoreError
from modelstore.layout import Store
from retrain.config import ModelRetraining, RetrainConfig, read_config
from retrain.errors import JobBusy
from retrain.job import JobContext, run_job
from retrain.records import JobRecord, JobStore, TriggerFigures
from retrain.runner import LocalRunner, Runner
from retrain.triggers import CheckResult, check

log = logging.getLogger("onnxgate.retrain")


def check_model(store: Store, name: str, settings: ModelRetraining, now: float) -> CheckResult:
    return check(store, name, settings, JobStore(store.root).last(name), now)


def watch(store: Store, *, interval_s: float, once: bool = False, stop: threading.Event | None = None,
          runner: Runner | None = None, clock: Callable[[], float] = time.time) -> list[JobRecord]:
    """Returns the jobs this loop ran."""
    stop = stop or threading.Event()
    runner = runner or LocalRunner()
    config: RetrainConfig = read_config(store.root)  # a broken file at start is the caller's error
    ran: list[JobRecord] = []
    while not stop.is_set():
        try:
            config = read_config(store.root)
        except StoreError as exc:
            log.error("retrain.toml unreadable, keeping the previous configuration: %s", exc)
        for name, settings in config.models.items():
            if stop.is_set():
                break
            record = _check_and_run(store, name, settings, stop, runner, clock)
            if record is not None:
                ran.append(record)
        if once:
            break
        stop.wait(interval_s)
    return ran


def _check_and_run(store: Store, name: str, settings: ModelRetraining, stop: threading.Event, runner: Runner,
                   clock: Callable[[], float]) -> JobRecord | None:
    try:
        result = check_model(store, name, settings, clock())
    except StoreError as exc:
        log.error("check %s: cannot check: %s", name, exc)
        return None
    firing = result.firing
    if firing is None:
        if result.cooldown_until:
            why = f"cooldown until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(result.cooldown_until))}"
        elif result.canary:
            why = f"a canary of {result.canary} is running"
        else:
            why = "; ".join(f"{t.trigger}: {t.reason}" for t in result.triggers) or "no automatic trigger configured"
        log.info("check %s: nothing fires (%s)", name, why)
        return None
    log.info("check %s: %s fires (%s): starting a job", name, firing.trigger, firing.reason)

    def decide(last: JobRecord | None) -> TriggerFigures | None:
        # under the lock: another watcher may have run a job since this one checked
        return check(store, name, settings, last, clock()).firing

    try:
        record = run_job(JobContext(store, name, settings, runner, stop, clock), decide)
    except JobBusy:
        log.info("job %s: another watcher's job is running; skipped", name)
        return None
    except StoreError as exc:
        log.error("job %s: could not be recorded: %s", name, exc)
        return None
    if record is None:
        log.info("job %s: another watcher ran one meanwhile; nothing fires now", name)
        return None
    version = f" {record.version}" if record.version else ""
    reason = f": {record.reason}" if record.reason else ""
    signal = f" (SIGTERM: {record.signal})" if record.signal else ""
    log.info("job %s %s: %s%s%s%s", name, record.id, record.status, version, reason, signal)
    return record
