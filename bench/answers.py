"""Before loading a server, ask it once and check the answer, so a fast error page is never benchmarked as a win.

Expected values are computed here with onnxruntime from the row in the wrk script, not written down."""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.servers import Endpoint

_LUA_BODY = re.compile(r"wrk\.body\s*=\s*\[=\[(.*?)\]=\]", re.S)
TOLERANCE = 1e-5


class WrongAnswer(RuntimeError):
    """A server answered the benchmark request with an error or with outputs that are not the model's."""


@dataclass(frozen=True)
class Expected:
    label: int
    probabilities: list[float]


def lua_body(lua_script: Path) -> bytes:
    match = _LUA_BODY.search(lua_script.read_text())
    if match is None:
        raise ValueError(f"{lua_script}: no wrk.body = [=[ ... ]=] found")
    return match.group(1).encode()


def bench_row(predict_lua: Path) -> np.ndarray:
    return np.asarray(json.loads(lua_body(predict_lua))["inputs"], dtype=np.float32)


def expected_answer(onnx_path: Path, row: np.ndarray) -> Expected:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {session.get_inputs()[0].name: row})
    return Expected(int(label[0]), [float(p) for p in probabilities[0]])


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise WrongAnswer(f"{url} answered {exc.code}: {exc.read()[:300]!r}") from None


def check_answer(url: str, endpoint: Endpoint, expected: Expected) -> dict:
    """POST the endpoint's wrk body once; return the answer if it carries the expected outputs, else raise."""
    answer = post(url, lua_body(endpoint.lua_script))
    if endpoint.answers == "probabilities":
        if not contains_run(flat_numbers(answer), expected.probabilities):
            raise WrongAnswer(f"{url}: probabilities {expected.probabilities} not in the answer {answer}")
    elif endpoint.answers == "label":
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        predicted = [o.get("data") for o in outputs if isinstance(o, dict) and o.get("name") == "predict"] \
            if isinstance(outputs, list) else None
        if predicted != [[expected.label]]:
            raise WrongAnswer(f"{url}: expected predict() == [{expected.label}], got {answer}")
    else:
        raise ValueError(f"unknown answer kind {endpoint.answers!r}")
    return answer


def flat_numbers(value: object) -> list[float]:
    """Every number in a JSON value, depth first, in order (bools and strings skipped)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in flat_numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in flat_numbers(item)]
    return []


def contains_run(numbers: list[float], run: list[float]) -> bool:
    width = len(run)
    return any(
        np.allclose(numbers[start:start + width], run, atol=TOLERANCE, rtol=0)
        for start in range(len(numbers) - width + 1)
    )
