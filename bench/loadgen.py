"""wrk, the load generator: build its command line (pinned to its own core) and read what it prints."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LOADGEN_CPU = "1"
WRK_INSTALL_HINT = "wrk is not installed: run `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_REQUESTS_PER_S = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_NON_2XX = re.compile(r"^\s+Non-2xx or 3xx responses:\s+(\d+)", re.M)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


class LoadgenError(RuntimeError):
    """wrk is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True)
class LoadSpec:
    duration_s: int
    connections: int
    threads: int = 1
    timeout_s: int = 5


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.socket_errors == 0

    def as_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean}


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadgenError(WRK_INSTALL_HINT)
    return path


def wrk_command(url: str, lua_script: Path, spec: LoadSpec) -> list[str]:
    return [
        "taskset", "-c", LOADGEN_CPU, require_wrk(),
        f"-t{spec.threads}", f"-c{spec.connections}", f"-d{spec.duration_s}s", f"--timeout={spec.timeout_s}s",
        "--latency", "-s", str(lua_script), url,
    ]


def run_wrk(url: str, lua_script: Path, spec: LoadSpec) -> WrkResult:
    return finish_wrk(start_wrk(url, lua_script, spec), url, spec)


def start_wrk(url: str, lua_script: Path, spec: LoadSpec) -> subprocess.Popen:
    """wrk started in the background (see finish_wrk), so that two can load two servers at once."""
    if not url.startswith("http://127.0.0.1:"):
        raise LoadgenError(f"refusing to load anything but 127.0.0.1: {url}")
    return subprocess.Popen(wrk_command(url, lua_script, spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_wrk(process: subprocess.Popen, url: str, spec: LoadSpec) -> WrkResult:
    try:
        stdout, stderr = process.communicate(timeout=spec.duration_s + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise LoadgenError(f"wrk on {url} did not finish in {spec.duration_s + 30} s") from None
    if process.returncode != 0 or stderr.strip():
        raise LoadgenError(f"wrk failed on {url} (exit {process.returncode}): {stderr.strip()[:500]}")
    return parse_wrk_output(stdout)


def parse_wrk_output(text: str) -> WrkResult:
    requests_per_s = _REQUESTS_PER_S.search(text)
    total = _TOTAL.search(text)
    percentiles = {int(p): float(value) * _UNIT_MS[unit] for p, value, unit in _PERCENTILE.findall(text)}
    if requests_per_s is None or total is None or 50 not in percentiles or 99 not in percentiles:
        raise LoadgenError(f"cannot read wrk output (was --latency given?):\n{text[:1000]}")
    non_2xx = _NON_2XX.search(text)
    socket_errors = _SOCKET_ERRORS.search(text)
    return WrkResult(
        requests_per_s=float(requests_per_s.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )
