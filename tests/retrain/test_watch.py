"""`onnxgate retrain watch`: two watchers on one store run each job once; a failing job does not stop the loop;
SIGTERM abandons a job that is training and lets one that is past training finish, and the record says which."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from retrain.config import read_config
from retrain.records import JobStore
from retrain.runner import LocalRunner
from retrain.watch import watch
from tests.retrain.conftest import STRONG, write_config

FIRES = 'new_data = { path = "data/window.csv", rows = 100 }\n'


def watcher(store, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "onnxgate", "retrain", "watch", *args, "--store", str(store.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_watchers_on_one_store_run_each_job_once(store, workdir):
    write_config(store, workdir, command=STRONG, triggers=FIRES)
    first, second = watcher(store, "--once", "--json"), watcher(store, "--once", "--json")
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    jobs = JobStore(store.root).jobs("cancer")
    assert len(jobs) == 1 and jobs[0].status == "completed" and jobs[0].trigger.trigger == "new_data"
    assert sorted(len(json.loads(stdout)) for stdout, _ in outputs) == [0, 1]
    logs = "".join(stderr for _, stderr in outputs)
    assert logs.count("check cancer:") >= 2  # one line per check, from each watcher
    # again: the cooldown holds both back
    again = [watcher(store, "--once") for _ in range(2)]
    logs = "".join(process.communicate(timeout=300)[1] for process in again)
    assert len(JobStore(store.root).jobs("cancer")) == 1 and logs.count("nothing fires (cooldown until") == 2


def test_a_failing_job_does_not_stop_the_loop(store, workdir):
    write_config(store, workdir, command="{python} -c \"raise SystemExit(4)\"", triggers=FIRES, name="broken")
    broken = (store.root / "retrain.toml").read_text()
    write_config(store, workdir, command=STRONG, triggers=FIRES)
    (store.root / "retrain.toml").write_text(broken + "\n" + (store.root / "retrain.toml").read_text())

    ran = watch(store, interval_s=3600, once=True)

    assert [(record.model, record.status) for record in ran] == [("broken", "failed"), ("cancer", "completed")]


def test_sigterm_while_training_abandons_the_job_and_says_so(store, workdir, tmp_path):
    hang = tmp_path / "hang.py"
    hang.write_text("import time\ntime.sleep(600)\n")
    write_config(store, workdir, command=f"{{python}} {hang}", triggers=FIRES, timeout="10m")
    process = watcher(store, "--interval", "1h")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(job.status == "running" for job in JobStore(store.root).jobs()):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    [job] = JobStore(store.root).jobs("cancer")
    assert job.status == "abandoned" and job.signal == "abandoned" and "SIGTERM while training" in job.reason
    assert "abandoned" in stderr and "Traceback" not in stderr


class StopAfterTraining:
    """The real local runner; the stop event is set as training ends, as a SIGTERM arriving then would."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def run(self, spec, stop):
        result = LocalRunner().run(spec, stop)
        self.stop.set()
        return result


def test_sigterm_after_training_finishes_the_job_and_says_so(store, workdir):
    write_config(store, workdir, command=STRONG, triggers=FIRES)
    read_config(store.root)
    stop = threading.Event()

    [job] = watch(store, interval_s=3600, stop=stop, runner=StopAfterTraining(stop))

    assert job.status == "completed" and job.signal == "finished" and job.version == "v1.0.0"
    assert store.registry.read().state.deployment("cancer", "production").version == "v1.0.0"
