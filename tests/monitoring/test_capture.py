"""Capture files: rotation at the size bound, the total bound per model and environment, hourly files, and the
writer queue that drops (and counts) rather than block."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from gateway.capture import Capture, Captured
from monitoring.capture import Bounds, CapturedIds, CaptureFiles, capture_files, monitoring_dir, read_captures
from tests.monitoring.conftest import classifier_metadata

NOW = 1_780_000_000.0  # a fixed hour: the file names depend on it


def lines(count: int, start: int = 0, pad: int = 60) -> list[bytes]:
    return [orjson.dumps({"id": f"r{i}", "time": NOW, "pad": "x" * pad}) + b"\n" for i in range(start, start + count)]


def sizes(directory: Path) -> list[int]:
    return [size for _, _, size in capture_files(directory)]


def test_files_rotate_at_the_size_bound_and_every_line_stays_whole(tmp_path: Path):
    files = CaptureFiles(tmp_path, Bounds(file_max_bytes=1000, total_max_bytes=1_000_000))
    written = lines(60)
    for start in range(0, 60, 7):  # batches of several lines, as the writer thread appends them
        files.append("iris", "production", written[start:start + 7], NOW)
    directory = monitoring_dir(tmp_path, "iris", "production")
    assert len(sizes(directory)) >= len(b"".join(written)) // 1000
    assert all(size <= 1000 for size in sizes(directory))
    assert [record["id"] for record in read_captures(tmp_path, "iris", "production")] == [f"r{i}" for i in range(60)]
    assert all(name.startswith(f"capture-{time.strftime('%Y%m%dT%H', time.gmtime(NOW))}-p{os.getpid()}-")
               for _, name, _ in capture_files(directory))


def test_the_oldest_files_go_beyond_the_total_bound(tmp_path: Path):
    files = CaptureFiles(tmp_path, Bounds(file_max_bytes=1000, total_max_bytes=3000))
    for start in range(0, 200, 5):
        files.append("iris", "production", lines(5, start), NOW)
    directory = monitoring_dir(tmp_path, "iris", "production")
    assert sum(sizes(directory)) <= 3000
    kept = [record["id"] for record in read_captures(tmp_path, "iris", "production")]
    assert 0 < len(kept) < 200
    assert kept == [f"r{i}" for i in range(200 - len(kept), 200)]  # the newest, in order


def test_a_new_hour_opens_a_new_file_and_since_skips_older_records(tmp_path: Path):
    files = CaptureFiles(tmp_path, Bounds(file_max_bytes=1 << 20, total_max_bytes=1 << 22))
    files.append("iris", "production", [orjson.dumps({"id": "old", "time": NOW}) + b"\n"], NOW)
    files.append("iris", "production", [orjson.dumps({"id": "new", "time": NOW + 3600}) + b"\n"], NOW + 3600)
    assert len(capture_files(monitoring_dir(tmp_path, "iris", "production"))) == 2
    assert [r["id"] for r in read_captures(tmp_path, "iris", "production", since_epoch_s=NOW + 1)] == ["new"]


def test_captured_ids_are_read_incrementally_and_forget_pruned_files(tmp_path: Path):
    files = CaptureFiles(tmp_path, Bounds(file_max_bytes=500, total_max_bytes=1000))
    ids = CapturedIds(tmp_path, "iris", "production")
    files.append("iris", "production", lines(3), NOW)
    ids.refresh()
    assert "r0" in ids and "r2" in ids and "r3" not in ids
    files.append("iris", "production", lines(40, 3), NOW)
    ids.refresh()
    assert "r42" in ids and "r0" not in ids  # r0's file was pruned under the total bound


def captured(index: int) -> Captured:
    rows = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    return Captured(f"id-{index}", NOW, "iris", "production", "v1.0.0", "stable", classifier_metadata(), {"X": rows},
                    {"label": np.array([index % 3]), "probabilities": np.array([[0.2, 0.3, 0.5]], dtype=np.float32)})


def test_a_full_queue_drops_and_counts_and_never_blocks(tmp_path: Path):
    registry = CollectorRegistry()
    capture = Capture(CaptureFiles(tmp_path, Bounds(1 << 20, 1 << 22)), max_queue=3, registry=registry)
    # the writer is not started yet: the queue fills, deterministically
    accepted = [capture.offer(captured(i)) for i in range(8)]
    assert accepted == [True] * 3 + [False] * 5
    labels = {"model": "iris", "environment": "production"}
    assert registry.get_sample_value("capture_records_total", {**labels, "outcome": "dropped"}) == 5
    capture.start()
    capture.join()
    assert registry.get_sample_value("capture_records_total", {**labels, "outcome": "written"}) == 3
    records = list(read_captures(tmp_path, "iris", "production"))
    assert [r["id"] for r in records] == ["id-0", "id-1", "id-2"]
    assert [r["prediction"] for r in records] == [["setosa"], ["versicolor"], ["virginica"]]
    assert records[0]["inputs"] == {"X": captured(0).feeds["X"].tolist()}
    capture.close()
