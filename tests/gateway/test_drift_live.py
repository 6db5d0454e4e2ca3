"""Live drift through a real gateway: GET /drift/{model} and the drift_* gauges over what was served, a window per
(model, environment, version) when one version serves two environments, the fixed window, the per-worker snapshots
(and the old key format skipped), figures across two workers (`onnxgate serve --workers 2`), and the 404s."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.drift_snapshots import decode, read_snapshots, snapshot_path, write_snapshot
from gateway.drift_window import HOLD_ROWS, DriftWindow, WindowSpec, window_totals
from gateway.settings import GatewaySettings
from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.rollout import StartCanary
from modelstore.transitions import transition
from monitoring.drift import DriftLayout, DriftThresholds
from onnxgate.__main__ import main
from tests.factories import (
    WATCHED_FEATURES,
    deploy_version,
    free_port,
    make_store,
    publish_classifier,
    publish_watched_classifier,
    running_server,
    stop_server,
    training_rows,
    wait_ready,
)
from tests.gateway.conftest import gateway_settings

DEADLINE_S = 60.0
MIN_ROWS = 500
BATCH = 50  # rows per request: below max_batch_rows (100)


def shifted(rows: np.ndarray, features: list[int], by_std: float = 3.0) -> np.ndarray:
    moved = rows.copy()
    for index in features:
        moved[:, index] += by_std * rows[:, index].std()
    return moved


def send(client: httpx.Client, model: str, rows: np.ndarray, headers: dict[str, str] | None = None,
         **params: str) -> None:
    for start in range(0, len(rows), BATCH):
        response = client.post(f"/predict/{model}", json={"inputs": rows[start:start + BATCH].tolist()}, params=params,
                               headers=headers)
        assert response.status_code == 200, response.text


def report_when(client: httpx.Client, model: str, rows: int, headers: dict[str, str] | None = None,
                **params: str) -> dict:
    """The drift report once its window holds `rows` rows (a generous deadline: other workers count on a timer)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = client.get(f"/drift/{model}", params=params, headers=headers)
        assert response.status_code == 200, response.text
        report = response.json()
        if report["window_rows"] >= rows:
            return report
        assert time.monotonic() < deadline, f"window holds {report['window_rows']} rows, not {rows}"
        time.sleep(0.1)


# -- through one real gateway -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def watched_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Watched classifiers (reference statistics of their training rows) fresh, shifted and few in production, plus
    v2 of fresh registered only; twoenvs and pinnedenvs v1.0.0 in both production and staging; plain has no reference
    statistics."""
    store = make_store(tmp_path_factory.mktemp("drift") / "models")
    for name in ("fresh", "shifted", "few", "gauged", "agreed"):
        publish_watched_classifier(store, name, seed=1)
        deploy_version(store, name, "v1.0.0", "production")
    publish_watched_classifier(store, "fresh", "v2.0.0", seed=2)
    for name in ("twoenvs", "pinnedenvs"):
        publish_watched_classifier(store, name, seed=1)
        deploy_version(store, name, "v1.0.0", "production")
        deploy_version(store, name, "v1.0.0", "staging")
    publish_watched_classifier(store, "split", seed=1)
    publish_watched_classifier(store, "split", "v2.0.0", seed=2)
    deploy_version(store, "split", "v1.0.0", "production")
    transition(store, StartCanary("split", "production", "v2.0.0", 50), Change(actor="tests"))
    publish_classifier(store, "plain", "v1.0.0", seed=3)
    deploy_version(store, "plain", "v1.0.0", "production")
    return store


@pytest.fixture(scope="module")
def live(watched_store: Store) -> Iterator[httpx.Client]:
    settings = gateway_settings(watched_store, "production", "staging", drift_enabled=True, drift_flush_s=0.2,
                                pin_any_version=True)
    with running_server(create_app(settings, metrics_registry=CollectorRegistry())) as url, \
            httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        yield client


@pytest.mark.e2e
def test_no_drift_on_fresh_rows_from_the_training_distribution(live: httpx.Client):
    rows = training_rows(seed=101, rows=2000)
    send(live, "fresh", rows)

    report = report_when(live, "fresh", len(rows))

    assert (report["model"], report["version"], report["environment"]) == ("fresh", "v1.0.0", "production")
    assert report["window_rows"] == len(rows)
    assert report["status"] == "ok", report
    assert report["drifted_share"] == 0
    assert [f["name"] for f in report["features"]] == WATCHED_FEATURES
    assert not any(f["drifted"] for f in report["features"])
    assert report["prediction"]["available"] and report["prediction"]["rows"] == len(rows)
    assert not report["prediction"]["drifted"]


@pytest.mark.e2e
def test_drift_with_a_few_features_shifted(live: httpx.Client):
    rows = shifted(training_rows(seed=102, rows=2000), [0, 2])
    send(live, "shifted", rows)

    report = report_when(live, "shifted", len(rows))

    assert report["status"] == "drift", report
    drifted = {f["name"]: f["drifted"] for f in report["features"]}
    assert drifted == {name: index in (0, 2) for index, name in enumerate(WATCHED_FEATURES)}
    assert report["drifted_share"] == pytest.approx(0.5)
    assert report["thresholds"] == DriftThresholds().model_dump()


@pytest.mark.e2e
def test_insufficient_data_below_the_minimum_window_never_drift(live: httpx.Client):
    rows = shifted(training_rows(seed=103, rows=MIN_ROWS - BATCH), [0, 1, 2, 3], by_std=10)
    send(live, "few", rows)

    report = report_when(live, "few", len(rows))

    assert report["window_rows"] == len(rows)
    assert report["status"] == "insufficient data", report
    assert report["drifted_share"] is None and not any(f["drifted"] for f in report["features"])


@pytest.mark.e2e
def test_a_pinned_version_is_reported_on_its_own_rows(live: httpx.Client):
    rows = training_rows(seed=104, rows=600)
    send(live, "fresh", rows, version="v2.0.0")

    report = report_when(live, "fresh", len(rows), version="v2.0.0")

    assert (report["version"], report["window_rows"]) == ("v2.0.0", len(rows))


@pytest.mark.e2e
def test_stable_and_canary_rows_are_counted_for_the_version_that_answered(live: httpx.Client):
    rows = training_rows(seed=109, rows=1000)
    answered = {"v1.0.0": 0, "v2.0.0": 0}
    for start in range(0, len(rows), 10):
        response = live.post("/predict/split", json={"inputs": rows[start:start + 10].tolist()})
        assert response.status_code == 200, response.text
        answered[response.json()["version"]] += 10
    assert answered["v2.0.0"] > 0  # the canary took its share

    stable = report_when(live, "split", answered["v1.0.0"])
    canary = report_when(live, "split", answered["v2.0.0"], version="v2.0.0")

    assert (stable["version"], stable["window_rows"]) == ("v1.0.0", answered["v1.0.0"])
    assert (canary["version"], canary["window_rows"]) == ("v2.0.0", answered["v2.0.0"])


@pytest.mark.e2e
def test_unknown_model_environment_or_version_is_404_and_no_statistics_is_unavailable(live: httpx.Client):
    for path, headers, params in [("/drift/nothing", {}, {}), ("/drift/fresh", {"X-Environment": "nowhere"}, {}),
                                  ("/drift/fresh", {}, {"version": "v9.9.9"}), ("/drift/fresh", {}, {"version": "x"})]:
        response = live.get(path, headers=headers, params=params)
        assert response.status_code == 404, (path, headers, params, response.text)
        assert set(response.json()) == {"error"}
    staging = live.get("/drift/fresh", headers={"X-Environment": "staging"})
    assert staging.status_code == 503 and set(staging.json()) == {"error"}  # nothing deployed there, as /predict says

    plain = live.get("/drift/plain")
    assert plain.status_code == 200
    body = plain.json()
    assert (body["status"], body["window_rows"], body["version"]) == ("unavailable", 0, "v1.0.0")
    assert body["reason"]


def agree(online: object, offline: object, where: str = "report") -> None:
    """The same JSON, numbers to 1e-9."""
    if isinstance(online, dict):
        assert isinstance(offline, dict) and online.keys() == offline.keys(), where
        for key in online:
            agree(online[key], offline[key], f"{where}.{key}")
    elif isinstance(online, list):
        assert isinstance(offline, list) and len(online) == len(offline), where
        for index, (one, other) in enumerate(zip(online, offline, strict=True)):
            agree(one, other, f"{where}[{index}]")
    elif isinstance(online, float) and not isinstance(offline, bool):
        assert offline == pytest.approx(online, rel=0, abs=1e-9), where
    else:
        assert online == offline, where


@pytest.mark.e2e
def test_the_same_rows_give_the_same_report_online_and_offline(live: httpx.Client, watched_store: Store,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture):
    rows = shifted(training_rows(seed=106, rows=1500), [3], by_std=0.3)
    send(live, "agreed", rows)
    online = report_when(live, "agreed", len(rows))
    np.save(tmp_path / "rows.npy", rows)

    capsys.readouterr()
    assert main(["drift", "agreed", "--data", str(tmp_path / "rows.npy"), "--env", "production", "--json",
                 "--store", str(watched_store.root)]) == 0
    offline = json.loads(capsys.readouterr().out)

    assert online["window_rows"] == offline["window_rows"] == len(rows)
    assert online["features"][3]["psi"] > 0.01  # a report with something in it
    agree(online, offline)


def drift_samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.startswith("drift_")}


@pytest.mark.e2e
def test_gauges_show_the_stable_versions_figures(live: httpx.Client):
    rows = shifted(training_rows(seed=105, rows=1000), [1])
    send(live, "gauged", rows)
    report = report_when(live, "gauged", len(rows))
    route = {("model", "gauged"), ("environment", "production")}

    deadline = time.monotonic() + DEADLINE_S
    while (samples := drift_samples(live.get("/metrics").text)).get(("drift_window_rows", frozenset(route))) != len(rows):
        assert time.monotonic() < deadline, samples
        time.sleep(0.1)

    assert samples[("drift_status", frozenset(route | {("status", report["status"])}))] == 1
    assert sum(value for (name, labels), value in samples.items()
               if name == "drift_status" and route <= labels) == 1
    assert samples[("drift_drifted_share", frozenset(route))] == pytest.approx(report["drifted_share"])
    assert samples[("drift_prediction_psi", frozenset(route))] == pytest.approx(report["prediction"]["psi"])
    for feature in report["features"]:
        key = frozenset(route | {("feature", feature["name"])})
        assert samples[("drift_feature_psi", key)] == pytest.approx(feature["psi"])
    assert not any(("model", "plain") in labels for _, labels in samples)  # no statistics, no gauges


STAGING = {"X-Environment": "staging"}
PRODUCTION = {"X-Environment": "production"}


@pytest.mark.e2e
def test_one_version_in_two_environments_counts_each_environments_rows_apart(live: httpx.Client):
    staged = shifted(training_rows(seed=110, rows=1000), [0, 2])
    produced = training_rows(seed=111, rows=1500)
    send(live, "twoenvs", staged, headers=STAGING)
    send(live, "twoenvs", produced)  # no X-Environment: the default, production

    staging = report_when(live, "twoenvs", len(staged), headers=STAGING)
    production = report_when(live, "twoenvs", len(produced), headers=PRODUCTION)

    assert (staging["environment"], staging["version"]) == ("staging", "v1.0.0")
    assert (production["environment"], production["version"]) == ("production", "v1.0.0")
    assert staging["window_rows"] == len(staged) and staging["prediction"]["rows"] == len(staged)
    assert production["window_rows"] == len(produced) and production["prediction"]["rows"] == len(produced)
    assert staging["status"] == "drift", staging
    assert {f["name"] for f in staging["features"] if f["drifted"]} == {WATCHED_FEATURES[0], WATCHED_FEATURES[2]}
    assert production["status"] == "ok", production
    assert production["drifted_share"] == 0

    # the gauges: each environment's own figures, not the same mixed ones twice
    expected = {"staging": staging, "production": production}
    routes = {environment: frozenset({("model", "twoenvs"), ("environment", environment)}) for environment in expected}
    deadline = time.monotonic() + DEADLINE_S
    while any((samples := drift_samples(live.get("/metrics").text)).get(("drift_window_rows", routes[environment]))
              != report["window_rows"] for environment, report in expected.items()):
        assert time.monotonic() < deadline, samples
        time.sleep(0.1)
    for environment, report in expected.items():
        route = routes[environment]
        assert samples[("drift_status", route | {("status", report["status"])})] == 1
        assert sum(value for (name, labels), value in samples.items() if name == "drift_status" and route <= labels) == 1
        assert samples[("drift_drifted_share", route)] == pytest.approx(report["drifted_share"])
        assert samples[("drift_prediction_psi", route)] == pytest.approx(report["prediction"]["psi"])
        for feature in report["features"]:
            assert samples[("drift_feature_psi", route | {("feature", feature["name"])})] == pytest.approx(feature["psi"])
            assert samples[("drift_feature_ks", route | {("feature", feature["name"])})] == pytest.approx(feature["ks"])
    assert samples[("drift_drifted_share", routes["staging"])] == pytest.approx(0.5)
    assert samples[("drift_drifted_share", routes["production"])] == 0


@pytest.mark.e2e
def test_a_pinned_request_counts_for_the_environment_it_asked_for(live: httpx.Client):
    staged = training_rows(seed=112, rows=300)
    defaulted = training_rows(seed=113, rows=200)
    send(live, "pinnedenvs", staged, headers=STAGING, version="v1.0.0")
    send(live, "pinnedenvs", defaulted, version="v1.0.0")  # no X-Environment: the default, production
    v2 = live.post("/v2/models/pinnedenvs/versions/v1.0.0/infer", headers=STAGING, json={"inputs": [
        {"name": "X", "shape": [BATCH, len(WATCHED_FEATURES)], "datatype": "FP32",
         "data": training_rows(seed=114, rows=BATCH).ravel().tolist()}]})
    assert v2.status_code == 200, v2.text

    staging = report_when(live, "pinnedenvs", len(staged) + BATCH, headers=STAGING, version="v1.0.0")
    production = report_when(live, "pinnedenvs", len(defaulted), version="v1.0.0")

    assert (staging["environment"], staging["window_rows"]) == ("staging", len(staged) + BATCH)
    assert (production["environment"], production["window_rows"]) == ("production", len(defaulted))


def test_per_feature_gauges_only_up_to_the_configured_number_of_features(watched_store: Store):
    settings = gateway_settings(watched_store, drift_enabled=True, drift_flush_s=0.2,
                                drift_max_feature_labels=len(WATCHED_FEATURES) - 1)
    with running_server(create_app(settings, metrics_registry=CollectorRegistry())) as url, \
            httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        deadline = time.monotonic() + DEADLINE_S
        while not (samples := drift_samples(client.get("/metrics").text)):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert any(name == "drift_window_rows" for name, _ in samples)
    assert not any(name.startswith("drift_feature_") for name, _ in samples)


def test_with_drift_off_nothing_is_counted_and_the_report_says_why(watched_store: Store):
    settings = gateway_settings(watched_store, drift_enabled=False)
    with running_server(create_app(settings, metrics_registry=CollectorRegistry())) as url, \
            httpx.Client(base_url=url, timeout=DEADLINE_S) as client:
        send(client, "fresh", training_rows(seed=108, rows=100))
        response = client.get("/drift/fresh")
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["window_rows"]) == ("unavailable", 0)
    assert "ONNXGATE_DRIFT_ENABLED" in body["reason"]
    assert "drift_" not in metrics


# -- the window: fixed memory, rows and time ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout(watched_store: Store) -> DriftLayout:
    found = DriftLayout.of(watched_store.read_metadata("fresh", "v1.0.0"))
    assert found is not None
    return found


def served(layout: DriftLayout, rows: np.ndarray) -> tuple[dict, dict]:
    """Feeds and outputs as the service hands them over (outputs: any consistent classifier answer)."""
    labels = (rows[:, 0] > 0).astype(np.int64)
    probabilities = np.stack([1 - labels, labels, np.zeros_like(labels)], axis=1).astype(np.float32)
    return {"X": rows.astype(np.float32)}, {"label": labels, "probabilities": probabilities}


def test_the_window_keeps_a_fixed_number_of_blocks_whatever_the_traffic(layout: DriftLayout):
    spec = WindowSpec(rows=1000, slices=10, buffer_rows=64)
    window = DriftWindow(layout, spec, ["X"], ["label"])
    rows = training_rows(seed=5, rows=20_000)
    for start in range(0, len(rows), 7):
        feeds, outputs = served(layout, rows[start:start + 7])
        window.add(feeds, outputs, len(feeds["X"]))
    window.count_pending()

    blocks = window.blocks()
    assert len(blocks) <= spec.capacity + 1
    totals = window_totals(blocks, spec, time.time(), layout.empty_feature_counts().shape,
                           layout.empty_prediction_counts().shape)
    assert spec.rows <= totals.rows < spec.rows + spec.block_rows + 64 + 7
    # the newest rows are the ones counted: the same counts as counting them directly
    newest = rows[-totals.rows:]
    assert np.array_equal(totals.features, layout.count_features(layout.feature_table(served(layout, newest)[0])))


def test_rows_one_by_one_count_as_the_same_rows_in_requests_of_several(layout: DriftLayout):
    """Requests of one row (held, then copied together) and of several: the same counts; a request that does not
    fit the buffer's shapes (another row shape, a missing output) is counted on its own, and the requests held
    with it one by one."""
    spec = WindowSpec(rows=100_000, buffer_rows=64)
    rows = training_rows(seed=8, rows=300)
    one_by_one, together = (DriftWindow(layout, spec, ["X"], ["label"]) for _ in range(2))
    for start in range(len(rows)):
        one_by_one.add(*served(layout, rows[start:start + 1]), 1)
    for start in range(0, len(rows), 10):
        together.add(*served(layout, rows[start:start + 10]), 10)
    for window in (one_by_one, together):
        feeds, outputs = served(layout, rows[:1])
        window.add(feeds, {"probabilities": outputs["probabilities"]}, 1)  # no label: counted alone
        window.add({"X": feeds["X"][:, :2]}, outputs, 1)  # two features: the layout cannot read it, not counted
        window.count_pending()
    expected = layout.count_features(layout.feature_table(served(layout, np.concatenate([rows, rows[:1]]))[0]))
    for window in (one_by_one, together):
        blocks = window.blocks()
        assert sum(block.rows for block in blocks) == len(rows) + 1
        assert np.array_equal(sum(block.features for block in blocks), expected)
        assert np.array_equal(sum(block.predictions for block in blocks),
                              layout.count_predictions(served(layout, rows)[1]))


def test_a_request_is_held_by_reference_only_until_a_few_rows_after_it(layout: DriftLayout):
    """Served arrays are kept (not copied) until HOLD_ROWS rows are held, then copied together and let go; a request
    of more rows than that is copied at once, after the ones held before it."""
    spec = WindowSpec(rows=100_000, buffer_rows=1024)
    window = DriftWindow(layout, spec, ["X"], ["label"])
    rows = training_rows(seed=9, rows=HOLD_ROWS + 1 + 3 * HOLD_ROWS)
    feeds, outputs = served(layout, rows[:1])
    first = weakref.ref(feeds["X"])
    window.add(feeds, outputs, 1)
    del feeds, outputs
    assert first() is not None  # held, not yet copied
    for index in range(1, HOLD_ROWS + 1):
        window.add(*served(layout, rows[index:index + 1]), 1)
    assert first() is None  # copied with the others and released
    large = rows[HOLD_ROWS + 1:]
    window.add(*served(layout, large), len(large))
    assert window.held == []
    window.count_pending()
    blocks = window.blocks()
    assert sum(block.rows for block in blocks) == len(rows)
    assert np.array_equal(sum(block.features for block in blocks),
                          layout.count_features(layout.feature_table(served(layout, rows)[0])))


def test_a_time_window_leaves_out_blocks_older_than_it(layout: DriftLayout):
    now = [1000.0]
    spec = WindowSpec(rows=10_000, seconds=60, slices=6, buffer_rows=1)
    window = DriftWindow(layout, spec, ["X"], ["label"], clock=lambda: now[0])
    for _ in range(30):  # one request of 10 rows every 10 s, for 300 s
        feeds, outputs = served(layout, training_rows(seed=6, rows=10))
        window.add(feeds, outputs, 10)
        now[0] += 10
    blocks = window.blocks()
    assert len(blocks) <= spec.capacity + 1
    totals = window_totals(blocks, spec, now[0], layout.empty_feature_counts().shape,
                           layout.empty_prediction_counts().shape)
    assert 50 <= totals.rows <= 70  # the last 60 s, to a block's span


# -- snapshots ----------------------------------------------------------------------------------------------------


def test_snapshots_round_trip_and_unreadable_ones_are_skipped(layout: DriftLayout, tmp_path: Path):
    window = DriftWindow(layout, WindowSpec(rows=100, slices=4, buffer_rows=1), ["X"], ["label"])
    for seed in range(5):
        feeds, outputs = served(layout, training_rows(seed=seed, rows=30))
        window.add(feeds, outputs, 30)
    blocks = window.blocks()
    write_snapshot(tmp_path, {("fresh", "production", "v1.0.0"): blocks, ("empty", "production", "v1.0.0"): []}, 1)
    assert sorted(os.listdir(tmp_path)) == ["drift-1.npz"]  # no temporary file left behind
    snapshot_path(tmp_path, 2).write_bytes(b"PK\x03\x04 cut short")
    snapshot_path(tmp_path, 3).write_bytes(b"")

    [snapshot] = read_snapshots(tmp_path, skip_pid=os.getpid())

    assert list(snapshot) == [("fresh", "production", "v1.0.0")]
    for read, kept in zip(snapshot[("fresh", "production", "v1.0.0")], blocks, strict=True):
        assert np.array_equal(read.features, kept.features) and np.array_equal(read.predictions, kept.predictions)
        assert (read.rows, read.started, read.ended) == (kept.rows, kept.started, kept.ended)
    assert decode(snapshot_path(tmp_path, 1).read_bytes()).keys() == snapshot.keys()


def test_snapshots_of_the_old_key_format_are_skipped(layout: DriftLayout, tmp_path: Path):
    """A metrics directory kept across the upgrade may hold snapshots keyed by (model, version): their blocks cannot
    be told apart by environment, so they are left out, and the other workers' snapshots still count."""
    window = DriftWindow(layout, WindowSpec(rows=100, slices=4, buffer_rows=1), ["X"], ["label"])
    feeds, outputs = served(layout, training_rows(seed=7, rows=30))
    window.add(feeds, outputs, 30)
    [block] = window.blocks()
    np.savez(snapshot_path(tmp_path, 4), index=np.array([["fresh", "v1.0.0"]], dtype=str),
             f0=block.features[None], p0=block.predictions[None], r0=np.array([block.rows], dtype=np.int64),
             t0=np.array([[block.started, block.ended]], dtype=np.float64))
    np.savez(snapshot_path(tmp_path, 5), index=np.array([], dtype=str).reshape(0, 2))
    write_snapshot(tmp_path, {("fresh", "staging", "v1.0.0"): [block]}, 6)

    snapshots = read_snapshots(tmp_path, skip_pid=os.getpid())

    assert [list(snapshot) for snapshot in snapshots] == [[("fresh", "staging", "v1.0.0")]]
    with pytest.raises(ValueError, match="before windows per environment"):
        decode(snapshot_path(tmp_path, 4).read_bytes())


def test_thresholds_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ONNXGATE_DRIFT_THRESHOLDS", '{"psi": 0.2, "min_rows": 50}')
    monkeypatch.setenv("ONNXGATE_DRIFT_WINDOW_S", "600")
    settings = GatewaySettings()
    assert (settings.drift_thresholds.psi, settings.drift_thresholds.min_rows) == (0.2, 50)
    assert settings.drift_thresholds.ks == DriftThresholds().ks
    assert (settings.drift_window_rows, settings.drift_window_s, settings.drift_enabled) == (10_000, 600, True)


# -- two workers --------------------------------------------------------------------------------------------------


def worker_rows(directory: Path) -> list[int]:
    """Rows each worker's snapshot holds for fresh v1.0.0 in production."""
    counts = []
    for path in directory.glob("drift-*.npz"):
        blocks = decode(path.read_bytes()).get(("fresh", "production", "v1.0.0"), [])
        counts.append(sum(block.rows for block in blocks))
    return counts


@pytest.mark.e2e
def test_two_workers_report_the_whole_traffic(tmp_path: Path):
    store = make_store(tmp_path / "models")
    publish_watched_classifier(store, "fresh", seed=1)
    deploy_version(store, "fresh", "v1.0.0", "production")
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNXGATE_")}
    env.update(ONNXGATE_METRICS_DIR=str(state), ONNXGATE_DRIFT_ENABLED="true", ONNXGATE_DRIFT_FLUSH_S="0.2",
               ONNXGATE_DRIFT_WINDOW_ROWS="100000")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "onnxgate", "serve", "--env", "production", "--workers", "2",
                                    "--port", str(port), "--store", str(store.root)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    rows = training_rows(seed=107, rows=20_000)
    try:
        wait_ready(url, process)
        # A new connection per request, so that both workers take some; which one accepts is the kernel's choice,
        # so send in rounds until two workers have counted rows.
        with httpx.Client(base_url=url, timeout=DEADLINE_S, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            sent = 0
            per_worker: list[int] = []
            deadline = time.monotonic() + 90
            while sum(1 for count in per_worker if count) < 2:
                assert time.monotonic() < deadline and sent < len(rows), f"{sent} rows sent, workers hold {per_worker}"
                send(client, "fresh", rows[sent:sent + 10 * BATCH])
                sent += 10 * BATCH
                settle = time.monotonic() + DEADLINE_S
                while sum(per_worker := worker_rows(state)) != sent:
                    assert time.monotonic() < settle, f"snapshots hold {per_worker} rows, not {sent}"
                    time.sleep(0.1)

            reports = [report_when(client, "fresh", sent) for _ in range(10)]  # answered by either worker
    finally:
        stop_server(process)
    assert process.returncode == 0, log.read_text()
    assert {report["window_rows"] for report in reports} == {sent}
    assert len({json.dumps(report, sort_keys=True) for report in reports}) == 1
