"""Where the training command runs. A runner takes a TrainingSpec and returns how the command ended; `LocalRunner`
runs it as a subprocess of this host. A cluster runner (a Kubernetes Job) implements the same `run` (README,
"Retraining": what it needs)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

KILL_GRACE_S = 5.0  # after SIGTERM to the command's process group, SIGKILL
POLL_S = 0.2


@dataclass(frozen=True)
class TrainingSpec:
    job_id: str
    argv: list[str]
    workdir: Path
    output: Path  # the fresh directory the command writes to ({output})
    log: Path  # its stdout and stderr
    timeout_s: float
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment


@dataclass(frozen=True)
class TrainingResult:
    exit_code: int | None  # None: it did not end by itself (timed out or stopped)
    timed_out: bool = False
    stopped: bool = False  # the stop event was set (SIGTERM to the watcher) and the command was killed
    error: str | None = None  # it could not be started
    duration_s: float = 0.0


class Runner(Protocol):
    def run(self, spec: TrainingSpec, stop: threading.Event) -> TrainingResult:
        """Run the command to its end, its time limit, or until `stop` is set; never raise for the command's own
        failure."""


class LocalRunner:
    """A subprocess in its own session (so its whole process group can be killed), output to the job's log file."""

    def run(self, spec: TrainingSpec, stop: threading.Event) -> TrainingResult:
        started = time.monotonic()
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            try:
                process = subprocess.Popen(spec.argv, cwd=spec.workdir, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env={**os.environ, **spec.env},
                                           start_new_session=True)
            except OSError as exc:
                return TrainingResult(None, error=f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}")
            deadline = started + spec.timeout_s
            while True:
                try:
                    code = process.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                else:
                    _kill_group(process)  # what it left behind in its group
                    return TrainingResult(code, duration_s=time.monotonic() - started)
                if stop.is_set() or time.monotonic() >= deadline:
                    _kill_group(process)
                    process.wait()
                    return TrainingResult(None, timed_out=not stop.is_set(), stopped=stop.is_set(),
                                          duration_s=time.monotonic() - started)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM to the command's process group, then SIGKILL to what is left after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_S)
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
