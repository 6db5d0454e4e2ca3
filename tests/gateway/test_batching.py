"""Adaptive batching (gateway/batching.py): join and split on real onnxruntime sessions, the batcher's queue, and
the gateway end to end on a real uvicorn server, batching on against batching off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.batching import Batcher, batch_rows, join, join_key, run_joined, split
from gateway.loader import LoadedModel, load_model
from gateway.metrics import BATCH_SIZE_BUCKETS, BatchMetrics
from gateway.settings import GatewaySettings
from modelstore.deployments import Change
from modelstore.layout import Store
from modelstore.metadata import BatchingPolicy
from modelstore.rollout import start_canary
from tests.factories import (
    classifier_expected,
    deploy_version,
    make_store,
    mlp_expected,
    publish_classifier,
    publish_identity,
    publish_mlp,
    publish_row_sum,
    publish_text_classifier,
    running_server,
    text_expected,
)
from tests.gateway.conftest import gateway_settings
from tests.gateway.test_health_metrics import sample

DEADLINE_S = 60.0
BAD_IDS = [2, 999, 0, 0, 0, 0, 0, 0]  # 999 is past the text model's vocabulary: onnxruntime's Gather refuses it
MLP = {"width": 64, "layers": 2, "n_features": 8}
TEXTS = ["good movie", "the movie was awful", "fine", "bad bad poor", "great", "the movie", "poor great good", "was"]


# -- join and split --------------------------------------------------------------------------------------------------


def test_join_key_separates_what_cannot_be_joined():
    one = {"a": np.zeros((1, 2), np.float32), "b": np.zeros((1, 2), np.int64)}
    three = {"a": np.ones((3, 2), np.float32), "b": np.ones((3, 2), np.int64)}
    assert join_key(one, None) == join_key(three, None)
    assert join_key(one, None) != join_key({"a": np.zeros((1, 3), np.float32), "b": one["b"]}, None)  # shape
    assert join_key(one, None) != join_key({"a": np.zeros((1, 2), np.float64), "b": one["b"]}, None)  # dtype
    assert join_key(one, None) != join_key({"a": one["a"]}, None)  # input set
    assert join_key(one, None) != join_key(one, ["y"])  # outputs asked for
    assert join_key({"a": np.zeros((2, 2)), "b": np.zeros((3, 2))}, None) is None  # rows disagree
    assert join_key({"a": np.float32(1.0).reshape(())}, None) is None  # a scalar has no batch axis
    assert batch_rows(three) == 3


def test_split_gives_each_request_its_rows_back():
    requests = [{"X": np.full((rows, 2), index, np.float32)} for index, rows in enumerate([1, 3, 2])]
    joined = join(requests)
    assert joined["X"].shape == (6, 2)
    parts = split({"y": joined["X"][:, 0] * 10, "z": joined["X"]}, [1, 3, 2])
    for index, (part, rows) in enumerate(zip(parts, [1, 3, 2], strict=True)):
        assert part["y"].tolist() == [index * 10.0] * rows
        assert part["z"].shape == (rows, 2)
    assert split({"y": np.zeros(5)}, [1, 3, 2]) is None  # not one row per input row: cannot be split
    assert split({"y": np.float32(0).reshape(())}, [1, 2]) is None


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    store = make_store(tmp_path_factory.mktemp("batching") / "models")
    publish_text_classifier(store, "sentiment")
    publish_mlp(store, "mlp", **MLP)
    publish_identity(store, "echo", dtypes=("string", "float32"))
    publish_row_sum(store, "rowsum")
    return {name: load_model(store, name, "v1.0.0", cost_limit_s=0.002) for name in ("sentiment", "mlp", "echo", "rowsum")}


def ids_feeds(loaded: LoadedModel, texts: list[str]) -> dict[str, np.ndarray]:
    return loaded.text.encode(texts, 100)


def test_a_joined_run_answers_each_request_as_its_own_run_would(loaded):
    mlp = loaded["mlp"]
    rng = np.random.default_rng(3)
    requests = [{"X": rng.normal(size=(rows, MLP["n_features"])).astype(np.float32)} for rows in (1, 4, 2)]
    results = run_joined(mlp.run, requests, [1, 4, 2], None)
    for feeds, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result["y"], mlp.run(feeds)["y"], rtol=1e-5, atol=1e-6)
    echo = loaded["echo"]  # string tensors join too
    strings = [
        {"in_string": np.array([[f"r{i}", "x"]], dtype=object), "in_float32": np.full((1, 2), i, np.float32)} for i in range(3)
    ]
    results = run_joined(echo.run, strings, [1, 1, 1], None)
    assert [r["out_string"].tolist() for r in results] == [[[f"r{i}", "x"]] for i in range(3)]


def test_a_joined_run_that_fails_is_retried_per_request(loaded):
    sentiment = loaded["sentiment"]
    good = ids_feeds(sentiment, ["good movie"])
    bad = {"input_ids": np.array([BAD_IDS], np.int64), "attention_mask": np.ones((1, 8), np.int64)}
    results = run_joined(sentiment.run, [good, bad, good], [1, 1, 1], None)
    assert isinstance(results[1], InvalidArgument)
    for result in (results[0], results[2]):
        assert result["label"].tolist() == text_expected(["good movie"], 8).tolist()


# -- the batcher's queue -------------------------------------------------------------------------------------------


def batcher_for(model: LoadedModel, executor: ThreadPoolExecutor, **policy: object) -> Batcher:
    return Batcher(
        model.run,
        model.estimated_cost_s,
        BatchingPolicy(enabled=True, **policy),
        executor,
        max_in_flight=1,
        inline_max_s=0.0,
        joined_thread_min_s=0.0,
        metrics=BatchMetrics((model.name, model.version)),
    )


def runs_over_one_row(metrics: BatchMetrics) -> int:
    return sum(metrics.size_buckets) - metrics.size_buckets[0]


def test_requests_waiting_together_are_joined_up_to_max_batch_size(loaded):
    sentiment = loaded["sentiment"]

    async def submit_all(batcher: Batcher, texts: list[str]) -> list[dict]:
        return await asyncio.gather(*(batcher.submit(ids_feeds(sentiment, [t]), 1) for t in texts))

    with ThreadPoolExecutor(1) as executor:
        batcher = batcher_for(sentiment, executor, max_batch_size=3, max_queue_delay_ms=10_000)
        texts = (TEXTS * 2)[:15]
        answers = asyncio.run(submit_all(batcher, texts))  # full batches run without waiting for the delay
    assert [a["label"].item() for a in answers] == text_expected(texts, 8).tolist()
    metrics = batcher.metrics
    assert metrics.size_sum == len(texts)
    assert sum(metrics.size_buckets[BATCH_SIZE_BUCKETS.index(8) :]) == 0  # never more than 3 rows a run
    assert metrics.size_buckets[BATCH_SIZE_BUCKETS.index(4)] == 5  # 5 runs of 3 rows (the bucket le=4)
    assert sum(metrics.delay_buckets) == len(texts)


def test_with_no_delay_only_what_is_waiting_is_joined(loaded):
    """Delay 0: a request that finds the batcher idle runs at once, alone; those that come while it runs wait for it
    and then run together."""
    mlp = loaded["mlp"]
    rows = np.random.default_rng(5).normal(size=(9, MLP["n_features"])).astype(np.float32)

    async def scenario(batcher: Batcher) -> list[dict]:
        first = asyncio.ensure_future(batcher.submit({"X": rows[:1]}, 1))
        await asyncio.sleep(0)  # the first is running on the executor now
        rest = [batcher.submit({"X": rows[i : i + 1]}, 1) for i in range(1, 9)]
        return await asyncio.gather(first, *rest)

    with ThreadPoolExecutor(1) as executor:
        batcher = batcher_for(mlp, executor, max_batch_size=32)
        answers = asyncio.run(scenario(batcher))
    np.testing.assert_allclose(np.concatenate([a["y"] for a in answers]), mlp_expected(rows, **MLP), rtol=1e-4, atol=1e-5)
    assert batcher.metrics.size_buckets[0] == 1 and batcher.metrics.size_sum == 9  # 1 alone, then 8 together
    assert runs_over_one_row(batcher.metrics) == 1


def test_different_shapes_run_in_their_own_batches_and_a_bad_request_fails_alone(loaded):
    sentiment = loaded["sentiment"]
    good = ids_feeds(sentiment, ["great"])
    two = ids_feeds(sentiment, ["bad", "fine"])
    bad = {"input_ids": np.array([BAD_IDS], np.int64), "attention_mask": np.ones((1, 8), np.int64)}
    short = {"input_ids": np.array([[2, 3]], np.int64), "attention_mask": np.ones((1, 2), np.int64)}  # other shape

    async def scenario(batcher: Batcher) -> list:
        return await asyncio.gather(
            *(batcher.submit(f, batch_rows(f)) for f in (good, bad, short, two, good)), return_exceptions=True
        )

    with ThreadPoolExecutor(1) as executor:
        batcher = batcher_for(sentiment, executor, max_batch_size=32, max_queue_delay_ms=50)
        answers = asyncio.run(scenario(batcher))
    assert isinstance(answers[1], InvalidArgument)
    assert answers[0]["label"].tolist() == answers[4]["label"].tolist() == text_expected(["great"], 8).tolist()
    assert answers[3]["label"].tolist() == text_expected(["bad", "fine"], 8).tolist()
    assert isinstance(answers[2], InvalidArgument)  # the graph takes 8 tokens: the shorter one is refused, alone
    assert batcher.metrics.size_buckets[BATCH_SIZE_BUCKETS.index(8)] == 1  # good, bad, two, good: 5 rows in one run


def test_requests_of_other_widths_are_joined_among_themselves(loaded):
    rowsum = loaded["rowsum"]
    rng = np.random.default_rng(4)
    requests = [{"X": rng.normal(size=(1 + i % 2, 3 if i % 3 else 5)).astype(np.float32)} for i in range(12)]

    async def scenario(batcher: Batcher) -> list:
        return await asyncio.gather(*(batcher.submit(f, batch_rows(f)) for f in requests))

    with ThreadPoolExecutor(1) as executor:
        batcher = batcher_for(rowsum, executor, max_queue_delay_ms=50)
        answers = asyncio.run(scenario(batcher))
    for feeds, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer["total"], feeds["X"].sum(axis=1), rtol=1e-5, atol=1e-6)
    assert sum(batcher.metrics.size_buckets) == 2  # one run per width


def test_a_request_whose_caller_went_away_is_dropped(loaded):
    sentiment = loaded["sentiment"]

    async def scenario(batcher: Batcher) -> list:
        gone = asyncio.ensure_future(batcher.submit(ids_feeds(sentiment, ["bad"]), 1))
        kept = asyncio.ensure_future(batcher.submit(ids_feeds(sentiment, ["good"]), 1))
        await asyncio.sleep(0)
        gone.cancel()
        return [await kept]

    with ThreadPoolExecutor(1) as executor:
        batcher = batcher_for(sentiment, executor, max_queue_delay_ms=20)
        [answer] = asyncio.run(scenario(batcher))
    assert answer["label"].tolist() == text_expected(["good"], 8).tolist()
    assert batcher.metrics.size_sum == 1


def recording(model: LoadedModel, gate: threading.Event | None = None) -> tuple[Callable, list[tuple[int, int]]]:
    """The model's own run, noting (thread, rows) of each call; a joined run (more than one row) first waits for
    `gate` when one is given, so a test can act while it is in flight."""
    calls: list[tuple[int, int]] = []

    def run(feeds: dict, output_names: list[str] | None) -> dict:
        rows = batch_rows(feeds)
        calls.append((threading.get_ident(), rows))
        if gate is not None and rows > 1:
            assert gate.wait(DEADLINE_S)
        return model.run(feeds, output_names)

    return run, calls


def inline_batcher(model: LoadedModel, run: Callable, executor: ThreadPoolExecutor, *, joined_thread_min_s: float,
                   max_in_flight: int = 1, **policy: object) -> Batcher:
    """A batcher whose lone runs are cheap enough for the event loop, as the benchmark's models are."""
    return Batcher(run, model.estimated_cost_s, BatchingPolicy(enabled=True, **policy), executor,
                   max_in_flight=max_in_flight, inline_max_s=1.0, joined_thread_min_s=joined_thread_min_s,
                   metrics=BatchMetrics((model.name, model.version)))


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S} s: {what}"
        await asyncio.sleep(0.005)


def test_one_request_at_a_time_runs_at_once_on_the_event_loop_as_without_batching(loaded):
    """One connection: each request finds the batcher idle and nobody else in its loop iteration, so it runs at once,
    inline, and its outputs come back from submit itself, without a future or a wait."""
    mlp = loaded["mlp"]
    rows = np.random.default_rng(6).normal(size=(6, MLP["n_features"])).astype(np.float32)
    run, calls = recording(mlp)

    async def one_at_a_time(batcher: Batcher) -> list[dict]:
        answers = []
        for index in range(len(rows)):
            answer = batcher.submit({"X": rows[index : index + 1]}, 1)
            assert type(answer) is dict, f"request {index} waited"
            answers.append(answer)
            await asyncio.sleep(0)  # the next request comes in a later loop iteration, as over one connection
        return answers

    with ThreadPoolExecutor(1) as executor:
        batcher = inline_batcher(mlp, run, executor, joined_thread_min_s=1.0)
        answers = asyncio.run(one_at_a_time(batcher))
    np.testing.assert_allclose(np.concatenate([a["y"] for a in answers]), mlp_expected(rows, **MLP), rtol=1e-4, atol=1e-5)
    assert calls == [(threading.get_ident(), 1)] * len(rows)
    assert batcher.metrics.size_buckets[0] == len(rows) and batcher.metrics.delay_sum == 0.0


def test_requests_of_one_loop_iteration_are_joined_until_one_comes_alone_again(loaded):
    """The first request of a loop iteration runs at once; the others parsed behind it show that requests come
    together, so they queue and run joined, and so does the next one, until a drain finds it alone."""
    mlp = loaded["mlp"]
    rows = np.random.default_rng(7).normal(size=(11, MLP["n_features"])).astype(np.float32)
    run, calls = recording(mlp)

    async def scenario(batcher: Batcher) -> list[dict]:
        first = batcher.submit({"X": rows[:1]}, 1)
        rest = [batcher.submit({"X": rows[i : i + 1]}, 1) for i in range(1, 9)]
        assert type(first) is dict and all(isinstance(r, asyncio.Future) for r in rest)
        answers = [first, *await asyncio.gather(*rest)]
        late = batcher.submit({"X": rows[9:10]}, 1)  # company was seen lately: it waits for the next drain
        assert isinstance(late, asyncio.Future)
        answers.append(await late)
        await asyncio.sleep(0)
        alone = batcher.submit({"X": rows[10:11]}, 1)  # that drain found it alone: back to running at once
        assert type(alone) is dict
        return [*answers, alone]

    with ThreadPoolExecutor(1) as executor:
        batcher = inline_batcher(mlp, run, executor, joined_thread_min_s=1.0)
        answers = asyncio.run(scenario(batcher))
    np.testing.assert_allclose(np.concatenate([a["y"] for a in answers]), mlp_expected(rows, **MLP), rtol=1e-4, atol=1e-5)
    loop_thread = threading.get_ident()  # a joined run this cheap stays on the event loop
    assert calls == [(loop_thread, 1), (loop_thread, 8), (loop_thread, 1), (loop_thread, 1)]
    assert batcher.metrics.size_buckets[BATCH_SIZE_BUCKETS.index(8)] == 1 and batcher.metrics.size_sum == len(rows)


def test_a_joined_run_worth_a_thread_runs_off_the_loop_while_the_next_batch_gathers(loaded):
    """While a joined run is on a run thread the event loop keeps taking requests: they wait for it (no small run
    starts beside it) unless a full batch is waiting and a thread is free."""
    mlp = loaded["mlp"]
    rows = np.random.default_rng(8).normal(size=(8, MLP["n_features"])).astype(np.float32)
    gate = threading.Event()
    run, calls = recording(mlp, gate)

    def submit(batcher: Batcher, start: int, stop: int) -> list:
        return [batcher.submit({"X": rows[i : i + 1]}, 1) for i in range(start, stop)]

    async def scenario(batcher: Batcher) -> list[dict]:
        first = batcher.submit({"X": rows[:1]}, 1)
        joined = submit(batcher, 1, 4)
        await until(lambda: len(calls) == 2, "the joined run started")  # the loop runs this test while it is in flight
        waiting = submit(batcher, 4, 6)
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert len(calls) == 2, "a run of 2 rows started beside the one in flight"
        full = submit(batcher, 6, 8)  # 4 rows waiting: a full batch, and the second thread is free
        await until(lambda: len(calls) == 3, "the full batch started beside the run in flight")
        gate.set()
        return [first, *await asyncio.gather(*joined, *waiting, *full)]

    with ThreadPoolExecutor(2) as executor:
        batcher = inline_batcher(mlp, run, executor, joined_thread_min_s=0.0, max_in_flight=2, max_batch_size=4)
        answers = asyncio.run(scenario(batcher))
    np.testing.assert_allclose(np.concatenate([a["y"] for a in answers]), mlp_expected(rows, **MLP), rtol=1e-4, atol=1e-5)
    loop_thread = threading.get_ident()
    assert [rows for _, rows in calls] == [1, 3, 4]
    assert calls[0][0] == loop_thread and loop_thread not in (calls[1][0], calls[2][0])


# -- settings ------------------------------------------------------------------------------------------------------


def test_off_by_default_and_a_version_can_turn_it_on(tmp_path: Path):
    assert GatewaySettings().batching == BatchingPolicy(enabled=False, max_batch_size=32, max_queue_delay_ms=0)
    store = make_store(tmp_path / "models")
    publish_text_classifier(store, "plain")
    publish_text_classifier(store, "batched", batching=BatchingPolicy(enabled=True, max_queue_delay_ms=2))
    for name in ("plain", "batched"):
        deploy_version(store, name, "v1.0.0")
    app = create_app(gateway_settings(store), metrics_registry=CollectorRegistry())
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for name in ("plain", "batched"):
            assert client.post(f"/predict/{name}", json={"text": ["good"]}).status_code == 200
        pool = app.state.service.pools.pool
        assert pool.models[("plain", "v1.0.0")].batcher is None
        assert pool.models[("batched", "v1.0.0")].batcher is not None
        metrics = client.get("/metrics").text
    assert sample(metrics, "batch_size_count", model="batched") == 1
    assert "plain" not in "".join(line for line in metrics.splitlines() if line.startswith("batch_"))
    merged = BatchingPolicy(max_batch_size=8, max_queue_delay_ms=1).merged(BatchingPolicy.model_validate({"enabled": True}))
    assert merged == BatchingPolicy(enabled=True, max_batch_size=8, max_queue_delay_ms=1)


# -- end to end: the same rows through a gateway with batching on and one with it off -------------------------------


@pytest.fixture(scope="module")
def batching_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict]:
    """mlp, sentiment, rowsum (any width), echo (strings) and iris v1 with v2 as a 50% canary, in production."""
    store = make_store(tmp_path_factory.mktemp("batching_e2e") / "models")
    publish_mlp(store, "mlp", **MLP)
    publish_text_classifier(store, "sentiment")
    publish_row_sum(store, "rowsum")
    publish_identity(store, "echo", dtypes=("string",))
    weights = {
        "v1.0.0": publish_classifier(store, "iris", "v1.0.0", seed=1),
        "v2.0.0": publish_classifier(store, "iris", "v2.0.0", seed=2),
    }
    for name in ("mlp", "sentiment", "rowsum", "echo", "iris"):
        deploy_version(store, name, "v1.0.0")
    start_canary(store, "iris", "v2.0.0", "production", 50, change=Change(actor="tests", reason="batching test"))
    return store, weights


@pytest.fixture(scope="module")
def servers(batching_store) -> Iterator[dict[str, httpx.Client]]:
    """Two gateways over one store: "on" batches (up to 16 rows, no delay) and runs everything on the run threads, so
    that concurrent requests queue; "off" has the defaults."""
    store, _ = batching_store
    on = create_app(
        gateway_settings(store, batching=BatchingPolicy(enabled=True, max_batch_size=16), inline_run_max_ms=0),
        metrics_registry=CollectorRegistry(),
    )
    off = create_app(gateway_settings(store), metrics_registry=CollectorRegistry())
    with (
        running_server(on) as on_url,
        running_server(off) as off_url,
        httpx.Client(base_url=on_url, timeout=30) as on_client,
        httpx.Client(base_url=off_url, timeout=30) as off_client,
    ):
        yield {"on": on_client, "off": off_client}


def concurrently(calls: list[Callable[[], object]], threads: int = 16) -> list:
    """Run `calls` from `threads` client threads at once; results in the order of `calls`."""
    results: list = [None] * len(calls)
    start = threading.Barrier(threads)

    def worker(offset: int) -> None:
        start.wait()
        for index in range(offset, len(calls), threads):
            results[index] = calls[index]()

    workers = [threading.Thread(target=worker, args=(offset,)) for offset in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(DEADLINE_S)
    return results


def post(client: httpx.Client, path: str, body: dict) -> Callable[[], httpx.Response]:
    return lambda: client.post(path, json=body)


def batched_runs(client: httpx.Client, model: str) -> float:
    metrics = client.get("/metrics").text
    return sample(metrics, "batch_size_count", model=model) - sample(metrics, "batch_size_bucket", model=model, le="1.0")


def until_batched(client: httpx.Client, model: str, send_round: Callable[[], None]) -> None:
    """Send rounds of concurrent requests until the batch size histogram shows a run of more than one row."""
    deadline = time.monotonic() + DEADLINE_S
    before = batched_runs(client, model)
    send_round()
    while batched_runs(client, model) == before:
        assert time.monotonic() < deadline, f"no joined run of {model} within {DEADLINE_S} s"
        send_round()


def test_answers_with_batching_equal_answers_without_row_for_row(servers):
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(64, MLP["n_features"])).astype(np.float32).round(3)

    def mlp_round() -> None:
        for name, client in servers.items():
            answers = concurrently([post(client, "/predict/mlp", {"inputs": [row.tolist()]}) for row in rows])
            assert all(a.status_code == 200 for a in answers), (name, [a.text for a in answers if a.status_code != 200])
            got = np.array([a.json()["outputs"]["y"][0] for a in answers])
            np.testing.assert_allclose(got, mlp_expected(rows, **MLP), rtol=1e-4, atol=1e-5, err_msg=name)

    until_batched(servers["on"], "mlp", mlp_round)

    texts = [f"{a} {b}" for a in TEXTS for b in TEXTS[:4]]

    def text_round() -> None:
        answers = {
            name: concurrently([post(c, "/predict/sentiment", {"text": [t]}) for t in texts]) for name, c in servers.items()
        }
        for name, got in answers.items():
            labels = [a.json()["outputs"]["label"][0] for a in got]
            assert labels == [("negative", "positive")[i] for i in text_expected(texts, 8)], name
        on, off = ([a.json()["outputs"] for a in answers[name]] for name in ("on", "off"))
        assert [a["label"] for a in on] == [a["label"] for a in off]
        # onnxruntime's kernels may round the last bit differently for another number of rows
        np.testing.assert_allclose([a["probabilities"] for a in on], [a["probabilities"] for a in off], rtol=1e-5)

    until_batched(servers["on"], "sentiment", text_round)

    strings = [[f"row {i}", "é" * (i % 3)] for i in range(48)]

    def echo_round() -> None:
        for client in servers.values():
            answers = concurrently([post(client, "/predict/echo", {"inputs": [s]}) for s in strings])
            assert [a.json()["outputs"]["out_string"] for a in answers] == [[s] for s in strings]

    until_batched(servers["on"], "echo", echo_round)


def test_a_request_of_another_shape_gets_its_own_answer(servers):
    rng = np.random.default_rng(12)
    bodies = [
        rng.normal(size=(int(rows), int(width))).round(2).tolist()
        for rows, width in zip(rng.integers(1, 4, 96), rng.choice([3, 3, 3, 5], 96), strict=True)
    ]

    def shapes_round() -> None:
        answers = concurrently([post(servers["on"], "/predict/rowsum", {"inputs": body}) for body in bodies])
        for body, answer in zip(bodies, answers, strict=True):
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(
                answer.json()["outputs"]["total"], np.array(body, np.float32).sum(axis=1), rtol=1e-5, atol=1e-5
            )

    until_batched(servers["on"], "rowsum", shapes_round)


def test_a_bad_request_joined_with_good_ones_fails_alone(servers):
    good = [post(servers["on"], "/predict/sentiment", {"text": [t]}) for t in TEXTS * 3]
    bad = post(servers["on"], "/predict/sentiment", {"inputs": {"input_ids": [BAD_IDS], "attention_mask": [[1] * 8]}})
    expected = [("negative", "positive")[i] for i in text_expected(TEXTS * 3, 8)]
    plain = servers["off"].post("/predict/sentiment", json={"inputs": {"input_ids": [BAD_IDS], "attention_mask": [[1] * 8]}})
    assert plain.status_code == 400

    def mixed_round() -> None:
        answers = concurrently([bad, *good[:8], bad, *good[8:], bad])
        for answer in (answers[0], answers[9], answers[-1]):
            assert answer.status_code == 400 and answer.json() == plain.json()
        rest = answers[1:9] + answers[10:-1]
        assert [a.status_code for a in rest] == [200] * len(rest)
        assert [a.json()["outputs"]["label"][0] for a in rest] == expected

    until_batched(servers["on"], "sentiment", mixed_round)


def test_a_canary_and_its_stable_version_never_share_a_run(servers, batching_store):
    _, weights = batching_store
    rows = np.random.default_rng(13).normal(size=(64, 4)).astype(np.float32).round(3)
    seen = set()

    def split_round() -> None:
        answers = concurrently([post(servers["on"], "/predict/iris", {"inputs": [row.tolist()]}) for row in rows])
        for row, answer in zip(rows, answers, strict=True):
            body = answer.json()
            labels, _ = classifier_expected(weights[body["version"]], row[None, :])
            assert body["outputs"]["label"] == [("setosa", "versicolor", "virginica")[labels[0]]]
            seen.add(body["version"])

    until_batched(servers["on"], "iris", split_round)
    assert seen == {"v1.0.0", "v2.0.0"}
    metrics = servers["on"].get("/metrics").text
    assert sample(metrics, "batch_size_count", model="iris", version="v2.0.0") > 0


def test_with_default_settings_one_client_runs_alone_and_concurrent_clients_are_joined(batching_store):
    """The gateway's defaults: the test MLP is cheap enough to run inline. One client at a time: every run is one
    request, with no wait; concurrent clients: their requests are joined."""
    store, _ = batching_store
    app = create_app(gateway_settings(store, batching=BatchingPolicy(enabled=True)), metrics_registry=CollectorRegistry())
    rows = np.random.default_rng(14).normal(size=(48, MLP["n_features"])).astype(np.float32).round(3)
    expected = mlp_expected(rows, **MLP)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for row, want in zip(rows[:16], expected[:16], strict=True):
            answer = client.post("/predict/mlp", json={"inputs": [row.tolist()]})
            np.testing.assert_allclose(answer.json()["outputs"]["y"][0], want, rtol=1e-4, atol=1e-5)
        metrics = client.get("/metrics").text
        assert sample(metrics, "batch_size_count", model="mlp") == 16
        assert sample(metrics, "batch_size_bucket", model="mlp", le="1.0") == 16
        assert sample(metrics, "batch_queue_delay_seconds_sum", model="mlp") == 0.0

        def concurrent_round() -> None:
            answers = concurrently([post(client, "/predict/mlp", {"inputs": [row.tolist()]}) for row in rows])
            got = np.array([a.json()["outputs"]["y"][0] for a in answers])
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

        until_batched(client, "mlp", concurrent_round)
