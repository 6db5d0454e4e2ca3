"""The canary split's reference implementation, written from the spec with hashlib, and the shared vectors file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROUTING_VECTORS_PATH = Path(__file__).resolve().parent.parent / "vectors" / "routing.json"
BUCKETS = 10_000

KEYS = ["", "user-1", "user-2", "user-42", "tenant:acme/user:7", "Zoë", "naïve café", "用户-123", "🚀 launch",
        "a" * 300, "0", "00000000-0000-0000-0000-000000000000", "session\nwith newline", "UPPER-lower"]
# Weights whose percent * 100 ends in .5 pin down the rounding rule: Python's round() rounds half to even.
WEIGHTS = [0, 0.01, 0.005, 0.015, 0.125, 0.375, 1, 5, 12.5, 33.333, 50, 99.99, 100]
SALTS = ["00000000000000000000000000000000", "5f1c0e9a7b3d42c8a1e6f0b2d4c8e9a7", "0123456789abcdef"]


def bucket(key: str, salt: str | None = None) -> int:
    data = key.encode("utf-8") if salt is None else salt.encode("utf-8") + b"\x00" + key.encode("utf-8")
    digest = hashlib.sha256(data).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def canary_threshold(weight: float) -> int:
    return round(weight * 100)


def choices(deployment: dict) -> dict:
    threshold = canary_threshold(deployment["canary"]["weight"])
    salt = deployment.get("routing_salt")
    return {
        "deployment": deployment,
        "expected": [{"key": key, "version": deployment["canary"]["version"] if bucket(key, salt) < threshold
                      else deployment["version"]} for key in KEYS],
    }


def routing_vectors() -> dict:
    canary = {"version": "v1.1.0", "weight": 12.5}
    return {
        "spec": "bucket = first 8 bytes of sha256(utf-8 salt + one NUL byte + utf-8 key) as unsigned big-endian int, "
                "mod 10000, salt = the deployment's routing_salt; without a salt, of sha256(utf-8 key); "
                "canary iff bucket < round(weight * 100), Python round (half to even)",
        "buckets": [{"key": key, "bucket": bucket(key)} for key in KEYS],
        "salted_buckets": [{"salt": salt, "key": key, "bucket": bucket(key, salt)} for salt in SALTS for key in KEYS],
        "thresholds": [{"weight": weight, "threshold": canary_threshold(weight)} for weight in WEIGHTS],
        "choices": choices({"version": "v1.0.0", "canary": canary}),
        "salted_choices": choices({"version": "v1.0.0", "canary": {**canary, "weight": 50}, "routing_salt": SALTS[1]}),
    }


def write_routing_vectors(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(routing_vectors(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
