"""The data plane, transport-free: resolve the route, select the version, run it, record what happened.

    answer(model, environment, version, routing_key, request)
      resolve  environment and route (or a pinned version) from the served pool
      select   the canary for its share of traffic (sticky by routing key), else stable; a withheld version gets none
      run      the request's feeds for the selected version, inline when cheap, else on a thread
      record   per-version metrics, the live drift window of the version in the environment asked for (pinned
               too), and the route's rollout windows while a canary, shadow or bake is on
               (latency per unit of work: per row, for text per text and per 100 characters; and who sent it),
               written down in the answer ledger and counted with the next answers (gateway/answer_ledger.py)
      retry    a request the canary fails with a server-side error is answered by stable (`retried_from`)

HTTP (gateway/endpoints.py) and any other transport decode their bytes into a ModelRequest first.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple

import anyio
import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from gateway.answer_ledger import LEDGER_ENTRIES, MAX_HELD_ROWS, AnswerLedger
from gateway.batching import Batcher
from gateway.capture import Capture, Captured
from gateway.drift_monitor import DriftMonitor, Watched
from gateway.errors import (
    GatewayError,
    InvalidInput,
    ModelRunFailed,
    ModelUnavailable,
    PinnedCacheBusy,
    UnknownEnvironment,
    VersionNotPinnable,
    outcome_for,
)
from gateway.loader import LoadedModel, load_model
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.pool import Pool, ReloadReport, Route
from gateway.pool_keeper import PoolKeeper
from gateway.request_ids import RequestIds
from gateway.requests import ModelRequest
from gateway.rollout_state import RolloutState
from gateway.settings import GatewaySettings
from gateway.shadow import Tolerance
from gateway.traffic import Arm, choose_shadow, selected
from gateway.validation import Decoded
from modelstore.backends import ModelRepository
from modelstore.errors import ModelNotFound, NotDeployed, StoreError, VersionNotFound
from modelstore.metadata import ModelMetadata
from modelstore.outputs import format_outputs
from modelstore.versions import shown
from monitoring.capture import Bounds, CaptureFiles

log = logging.getLogger("onnxgate.gateway")


AnswerArm = Literal["stable", "canary", "pinned"]
NO_ROUTES: dict[str, Route] = {}


class Answer(NamedTuple):
    """Made for every request: a tuple's construction is the cheapest of the record types, and the request path makes
    it with tuple.__new__ (every field given), as a NamedTuple's own constructor is a Python function."""

    model: str
    version: str
    environment: str
    outputs: dict[str, np.ndarray]
    loaded: LoadedModel
    request_id: object = None
    arm: AnswerArm = "stable"
    mirror: Callable[[], Awaitable[None]] | None = None  # the shadow run, for after the response is sent
    retried_from: str | None = None  # the canary version that failed this request before stable answered it

    def as_json(self) -> dict:
        answer = {"id": self.request_id, "model": self.model, "version": self.version,
                  "environment": self.environment, "arm": self.arm, "outputs": format_outputs(self.loaded.metadata, self.outputs)}
        if self.retried_from is not None:
            answer["retried_from"] = self.retried_from
        return answer


class Service:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics, store: ModelRepository) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.environments = list(settings.environments)
        self.default_environment = self.environments[0]
        self._max_rows = settings.max_batch_rows
        self._inline_max_s = settings.inline_run_max_ms / 1000
        self.ledger = AnswerLedger()
        metrics.before_collect.append(self.ledger.settle)
        self.pools = PoolKeeper(store, self.environments, self.load, metrics, settings.slo_limits,
                                Tolerance(settings.shadow_rtol, settings.shadow_atol), self.ledger.settle)
        self._executor = ThreadPoolExecutor(max_workers=settings.run_threads, thread_name_prefix="onnxgate-run")
        self._pinned: OrderedDict[tuple[str, str], tuple[LoadedModel, float]] = OrderedDict()  # with its load time
        self._loading: dict[tuple[str, str], asyncio.Future[LoadedModel]] = {}
        self._rng = random.Random()
        self.request_ids = RequestIds()
        self._capture_rate = settings.capture_rate
        self.capture = Capture(CaptureFiles(settings.store, Bounds(settings.capture_file_max_bytes,
                                                                   settings.capture_total_max_bytes)),
                               settings.capture_queue_size, metrics.registry)
        self.drift = DriftMonitor(settings, settle=self.ledger.settle)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.capture.close()

    def load(self, store: ModelRepository, name: str, version: str) -> LoadedModel:
        loaded = load_model(store, name, version, cost_limit_s=self._inline_max_s)
        policy = self.settings.batching.merged(loaded.metadata.batching)
        if policy.enabled:
            loaded.batcher = Batcher(loaded.run, loaded.estimated_cost_s, policy, self._executor,
                                     max_in_flight=self.settings.run_threads, inline_max_s=self._inline_max_s,
                                     joined_thread_min_s=self.settings.joined_run_thread_min_ms / 1000,
                                     metrics=self.metrics.for_batching(name, version))
        loaded.drift = self.drift.window_for(loaded.metadata)
        return loaded

    async def reload(self) -> ReloadReport:
        self.ledger.settle()  # what the versions served until now answered, counted before any is let go
        report = await self.pools.reload()
        self._pinned.clear()
        return report

    # -- resolve -----------------------------------------------------------------------------------------------

    def environment(self, requested: str | None) -> str:
        if requested is None:
            return self.default_environment
        if requested not in self.environments:
            raise UnknownEnvironment(f"environment {shown(requested)} is not served here (served: "
                                     f"{', '.join(self.environments)})")
        return requested

    def route(self, model: str, environment: str) -> Route:
        pool = self.pools.pool
        route = pool.route(environment, model)
        if route is None:
            if (invalid := pool.registry.invalid_entry("deployments", model, environment)) is not None:
                raise ModelUnavailable(f"model {model!r} cannot be served in {environment!r}: {invalid.describe()}")
            if model in pool.registry.models:
                raise NotDeployed(f"model {model!r} has nothing deployed to environment {environment!r}")
            raise ModelNotFound(f"model {shown(model)} not found")
        return route

    async def resolve(self, model: str, environment: str, version: str | None = None) -> LoadedModel:
        """The version that answers plain (unkeyed, unsplit) requests: the pinned one, or the stable one."""
        if version is not None:
            return await self.pinned(model, version)
        return self.select(self.route(model, environment), None, split=False)[0]

    async def described(self, model: str, environment: str, version: str | None = None) -> tuple[LoadedModel, list[str]]:
        """What model metadata describes (v2, any transport): the version that answers (pinned, or stable) and the
        versions listed, every version the route serves (stable, canary, shadow) or the pinned one."""
        loaded = await self.resolve(model, environment, version)
        if version is not None:
            return loaded, [version]
        route = self.route(model, environment)
        return loaded, sorted({arm.version for arm in (route.stable, route.canary, route.shadow) if arm is not None})

    def is_ready(self, model: str, environment: str, version: str | None = None) -> bool:
        """v2 model readiness: the route has a loaded stable version, or the pinned version is in the pool. An
        unknown model or version raises (not found), rather than reading as not ready."""
        pool = self.pools.pool
        versions = pool.registry.models.get(model)
        if versions is None:
            raise ModelNotFound(f"model {shown(model)} not found")
        if version is None:
            route = pool.route(environment, model)
            return route is not None and route.stable is not None
        if version not in versions:
            raise VersionNotFound(f"model {model!r} has no version {shown(version)}")
        return (model, version) in pool.models

    async def pinned(self, model: str, version: str) -> LoadedModel:
        """A specific version, if the pin rules allow it (PinRules): one the pool holds, a cached one, or one loaded
        on demand (verified like any other). Concurrent pins of the same uncached version share one load."""
        pool = self.pools.pool
        key = (model, version)
        self.check_pinnable(pool, model, version)
        loaded = pool.models.get(key)
        if loaded is not None:
            return loaded
        cached = self._pinned.get(key)
        if cached is not None:
            self._pinned.move_to_end(key)
            return cached[0]
        loading = self._loading.get(key)
        if loading is None:
            self.make_room_for_pin(model, version)
            loading = self._loading[key] = asyncio.ensure_future(self.load_pinned(pool, model, version))
            loading.add_done_callback(functools.partial(self.pin_loaded, key))
        return await asyncio.shield(loading)  # a caller that goes away does not cancel the others' load

    def check_pinnable(self, pool: Pool, model: str, version: str) -> None:
        versions = pool.registry.models.get(model)
        if versions is None:
            raise ModelNotFound(f"model {shown(model)} not found")
        if version not in versions:
            raise VersionNotFound(f"model {model!r} has no version {shown(version)}")
        if version in pool.pins.rolled_back.get(model, ()):
            raise VersionNotPinnable(f"model {model!r} {shown(version)} was rolled back and is not served, pinned or not")
        if not self.settings.pin_any_version and version not in pool.pins.deployed.get(model, ()):
            raise VersionNotPinnable(f"model {model!r} {shown(version)} is not deployed in {', '.join(self.environments)}; "
                                     "only deployed versions can be pinned (operators: ONNXGATE_PIN_ANY_VERSION=true)")

    def make_room_for_pin(self, model: str, version: str) -> None:
        """Evict the least recently used pinned version, unless it is younger than pinned_min_residency_s: then
        refuse, so that cycling through more versions than the cache holds cannot make every request a full load."""
        size = self.settings.pinned_cache_size
        if size == 0:
            raise VersionNotPinnable(f"model {model!r} {version} is not loaded and on-demand loads of pinned versions "
                                     "are off (ONNXGATE_PINNED_CACHE_SIZE=0)")
        now = time.monotonic()
        while len(self._pinned) + len(self._loading) >= size:
            oldest = next(iter(self._pinned.values()), None)
            if oldest is None or now - oldest[1] < self.settings.pinned_min_residency_s:
                raise PinnedCacheBusy(f"model {model!r} {version}: every slot for pinned versions "
                                      f"({size}) holds one loaded in the last {self.settings.pinned_min_residency_s:g} "
                                      "s; retry later")
            self._pinned.popitem(last=False)

    async def load_pinned(self, pool: Pool, model: str, version: str) -> LoadedModel:
        try:
            loaded = await anyio.to_thread.run_sync(self.load, self.store, model, version)
        except StoreError as exc:
            self.metrics.version_loads.labels(model, "failed").inc()
            raise ModelUnavailable(f"model {model!r} {version} cannot be loaded: {exc}") from None
        except BaseException:
            self.metrics.version_loads.labels(model, "failed").inc()
            raise
        self.metrics.version_loads.labels(model, "ok").inc()
        if self.pools.pool is pool:  # a reload meanwhile may have changed the files: serve, but do not keep
            self._pinned[(model, version)] = (loaded, time.monotonic())
        return loaded

    # -- drift ------------------------------------------------------------------------------------------------

    async def drift_metadata(self, model: str, environment: str, version: str | None) -> ModelMetadata:
        """The metadata of the version GET /drift/{model} reports on: the one the environment's stable route serves,
        or a registered version named by ?version= (its metadata read from the store when it is not loaded here)."""
        if version is None:
            return self.select(self.route(model, environment), None, split=False)[0].metadata
        pool = self.pools.pool
        versions = pool.registry.models.get(model)
        if versions is None:
            raise ModelNotFound(f"model {shown(model)} not found")
        if version not in versions:
            raise VersionNotFound(f"model {model!r} has no version {shown(version)}")
        loaded = pool.models.get((model, version)) or self._pinned.get((model, version), (None,))[0]
        if loaded is not None:
            return loaded.metadata
        return await anyio.to_thread.run_sync(self.store.read_metadata, model, version)

    def watched(self) -> list[Watched]:
        """Every served environment's stable version of every model, for the drift gauges."""
        watched = []
        for environment, routes in self.pools.pool.routes.items():
            for model, route in routes.items():
                try:
                    loaded, _ = self.select(route, None, split=False)
                except GatewayError:
                    continue
                watched.append(Watched(model, environment, loaded.metadata))
        return watched

    async def refresh_drift_figures(self) -> None:
        """The drift gauges' figures, recomputed before the metrics are read."""
        await self.drift.refresh_figures(self.watched())

    def pin_loaded(self, key: tuple[str, str], loading: asyncio.Future) -> None:
        """A finished load leaves the single-flight table; a failure is not cached (the next pin tries again)."""
        if self._loading.get(key) is loading:
            del self._loading[key]
        if not loading.cancelled():
            loading.exception()  # retrieved here, so a failure nobody awaited is not logged as unhandled

    # -- select ------------------------------------------------------------------------------------------------

    def select(self, route: Route, routing_key: str | None, *, split: bool = True) -> tuple[LoadedModel, Arm]:
        """The canary for its share of traffic (sticky by routing key), else stable. A withheld canary gets nothing;
        a withheld stable version (a failed bake) gives way to the version it replaced, when that is loaded."""
        stable = route.stable
        rollout = route.rollout
        if rollout is not None:
            withheld = rollout.withheld
            canary = route.canary
            if (split and canary is not None and canary.version != withheld
                    and selected(route.canary_weight, routing_key, route.routing_salt, self._rng)):
                return canary, "canary"
            if withheld is not None and stable is not None and stable.version == withheld and route.previous:
                stable = route.previous
        if stable is None:
            raise ModelUnavailable(f"model {route.model!r} {route.deployment.version} in {route.environment!r} is not "
                                   f"loaded: {route.error or 'not loaded yet'}")
        return stable, "stable"

    # -- answer: select, run, record ---------------------------------------------------------------------------

    async def answer(self, model: str, environment: str | None, version: str | None, routing_key: str | None,
                     request: ModelRequest, *, source: str | None = None, request_id: str | None = None) -> Answer:
        """`source` (the trusted routing key when there is one, else the client's address) is who the rollout
        windows count the request for. The answer's id: the request body's own (v2), else `request_id` (the
        transport's, e.g. X-Request-Id), else a new one."""
        route: Route | None = None
        rollout: RolloutState | None = None
        arm: AnswerArm = "pinned"
        try:
            env = self.default_environment if environment is None else self.environment(environment)
            if version is None:  # resolves without a coroutine; a pin may load a version on demand
                # the pool's table straight, and `route` (which says why there is none) only when it has none
                route = self.pools.pool.routes.get(env, NO_ROUTES).get(model) or self.route(model, env)
                rollout = route.rollout
                stable = route.stable
                if rollout is None and stable is not None:  # select's answer when nothing is split or withheld
                    loaded, arm = stable, "stable"
                elif (rollout is not None and routing_key is None and rollout.withheld is None and stable is not None
                      and (canary := route.canary) is not None):  # select's answer to an unkeyed split, inline
                    if self._rng.random() * 100 < route.canary_weight:
                        loaded, arm = canary, "canary"
                    else:
                        loaded, arm = stable, "stable"
                else:
                    loaded, arm = self.select(route, routing_key)
            else:
                loaded = await self.pinned(model, version)
        except (GatewayError, StoreError) as exc:
            self.rejected(model, environment, exc)
            raise
        children = loaded.metrics.get(env) or loaded.metrics_for(self.metrics, env)
        decoded = None
        started = time.perf_counter()
        try:
            decoded = await self.decode_on_thread(request, loaded) if request.heavy else request.feeds(loaded,
                                                                                                      self._max_rows)
            feeds, rows, output_names = decoded.feeds, decoded.rows, decoded.output_names
            if loaded.batcher is None and loaded.base_cost_s + loaded.row_cost_s * rows <= self._inline_max_s:
                try:  # cheap enough to run on the event loop (as `run` would decide), without its coroutine
                    outputs = loaded.run(feeds, output_names)
                except Exception as exc:  # noqa: BLE001 - mapped, not swallowed
                    raise run_error(loaded, exc) from None
            else:
                outputs = await self.run(loaded, feeds, rows, output_names)
        except GatewayError as exc:
            elapsed = time.perf_counter() - started
            children.record(exc.outcome, elapsed)
            if rollout is not None and exc.status_code >= 500:  # the caller's mistakes judge no version
                rollout.record(arm, loaded.version, per_unit(decoded, elapsed), False, time.time(), source)
                if arm == "canary":
                    return await self.retry_on_stable(route, loaded, request, routing_key, source, exc, request_id)
            raise
        finished = time.perf_counter()
        labels = outputs.get(loaded.metadata.label_output)  # output names are strings: None when there is none
        entries = self.ledger.entries  # metrics, live drift and the rollout windows count it from there
        entries.append((children, loaded, env, rollout, arm, decoded, finished, finished - started, source, labels,
                        outputs))
        if len(entries) >= LEDGER_ENTRIES or rows > MAX_HELD_ROWS:
            self.ledger.settle()
        mirror = None
        if rollout is not None:
            shadow = route.shadow
            if shadow is not None and arm == "stable" and choose_shadow(route.deployment, routing_key, self._rng):
                mirror = functools.partial(self.mirror, route, loaded, shadow, request, outputs)
        answer = tuple.__new__(Answer, (model, loaded.version, env, outputs, loaded,  # every field: see Answer
                                        decoded.request_id or request_id or self.request_ids(), arm, mirror, None))
        if self._capture_rate or route is None or route.deployment.capture_rate:  # else nothing can be captured
            self.sample(answer, route, feeds)
        return answer

    async def decode_on_thread(self, request: ModelRequest, loaded: LoadedModel) -> Decoded:
        """A heavy request's decoding (e.g. megabytes of text to tokenize) off the event loop, which keeps answering
        the others meanwhile. (The loop's executor rather than anyio's: the HTTP direct path starts a request with no
        current task, which anyio's thread helpers need; see gateway/eager.py.)"""
        return await asyncio.get_running_loop().run_in_executor(None, request.feeds, loaded, self._max_rows)

    async def retry_on_stable(self, route: Route, canary: LoadedModel, request: ModelRequest,
                              routing_key: str | None, source: str | None, failure: GatewayError,
                              request_id: str | None = None) -> Answer:
        """The canary failed this request with a server-side error (already counted against it): stable answers it
        instead, measured as any stable request, and the answer says so. When stable fails it too, the client gets
        stable's error (or the canary's, when stable refuses the input as not fitting its signature), and the
        canary's failure is no evidence for the early test (the input fails both). When stable answers, the failure
        feeds the early test, which may withhold the canary at once."""
        rollout = route.rollout
        try:
            stable, _ = self.select(route, routing_key, split=False)
        except GatewayError:
            raise failure from None
        children = stable.metrics.get(route.environment) or stable.metrics_for(self.metrics, route.environment)
        decoded = None
        started = time.perf_counter()
        try:
            decoded = await self.decode_on_thread(request, stable) if request.heavy else request.feeds(stable,
                                                                                                      self._max_rows)
            outputs = await self.run(stable, decoded.feeds, decoded.rows, decoded.output_names)
        except GatewayError as exc:
            finished = time.perf_counter()
            children.record(exc.outcome, finished - started)
            if exc.status_code < 500:
                raise failure from None
            rollout.record("stable", stable.version, per_unit(decoded, finished - started), False, time.time(),
                           source)
            raise
        finished = time.perf_counter()
        elapsed = finished - started
        label_output = stable.metadata.label_output
        labels = outputs.get(label_output) if label_output is not None else None
        children.record_answer(elapsed, labels)
        windows = stable.drift
        if windows is not None:
            windows[route.environment].add(decoded.feeds, outputs, decoded.rows)
        now = time.time()
        rollout.record_answer("stable", stable.version, per_unit(decoded, finished - started), now, source, labels)
        if rollout.canary_failed(route.deployment, route.canary is not None, source):
            log.warning("rollout: canary %s of %s in %s withheld early: %s", canary.version, route.model,
                        route.environment, rollout.pending.verdict.reasons[0])
        answer = Answer(route.model, stable.version, route.environment, outputs, stable,
                        decoded.request_id or request_id or self.request_ids(), "stable", retried_from=canary.version)
        self.sample(answer, route, decoded.feeds)
        return answer

    # -- capture -----------------------------------------------------------------------------------------------

    def capture_rate(self, route: Route | None, model: str, environment: str) -> float:
        """The deployment's capture rate, else the gateway's; a pinned request's is its environment's deployment's."""
        if route is None:
            route = self.pools.pool.route(environment, model)
            if route is None:
                return self._capture_rate
        rate = route.deployment.capture_rate
        return self._capture_rate if rate is None else rate

    def sample(self, answer: Answer, route: Route | None, feeds: dict[str, np.ndarray]) -> None:
        """Capture the answer with its deployment's probability: handed to the capture writer, never blocking (a full
        queue drops it, counted)."""
        rate = self.capture_rate(route, answer.model, answer.environment)
        if not rate or (rate < 1 and self._rng.random() >= rate):
            return
        self.capture.offer(Captured(answer.request_id, time.time(), answer.model, answer.environment, answer.version,
                                    answer.arm, answer.loaded.metadata, feeds, answer.outputs))

    async def mirror(self, route: Route, stable: LoadedModel, shadow: LoadedModel, request: ModelRequest,
                     stable_outputs: dict[str, np.ndarray]) -> None:
        """The shadow's run of a request stable has already answered: measured and compared, never returned, and
        never raising (it runs after the response, where an exception would only reach the server's log)."""
        started = time.perf_counter()
        shadow_outputs = decoded = None
        try:
            decoded = await self.decode_on_thread(request, shadow) if request.heavy else request.feeds(shadow,
                                                                                                      self._max_rows)
            shadow_outputs = await self.run(shadow, decoded.feeds, decoded.rows, decoded.output_names)
        except GatewayError as exc:
            log.debug("shadow %s %s failed: %s", shadow.name, shadow.version, exc)
        except Exception:  # noqa: BLE001 - a shadow's failure must never surface
            log.exception("shadow %s %s failed", shadow.name, shadow.version)
        finished = time.perf_counter()
        route.rollout.record_shadow(stable, shadow, stable_outputs, shadow_outputs, finished - started,
                                    per_unit(decoded, finished - started), time.time())

    def rejected(self, model: str, environment: str | None, error: Exception) -> None:
        """Count a request refused before a model was resolved. Names from URLs and headers become label values
        only when the registry or the settings know them."""
        env = environment if environment in self.environments else ""
        if environment is None:
            env = self.default_environment
        known = model in self.pools.pool.registry.models
        self.metrics.rejected(model if known else UNKNOWN_MODEL, env, outcome_for(error))

    # -- run ---------------------------------------------------------------------------------------------------

    async def run(self, loaded: LoadedModel, feeds: dict[str, np.ndarray], rows: int,
                  output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Inline when the model's measured cost for this many rows is below the threshold (a thread hop would cost
        more than the run), else on the run executor so the event loop keeps accepting requests. A version with
        batching enabled goes through its batcher, which makes the same choice for each run."""
        try:
            if loaded.batcher is not None:
                outputs = loaded.batcher.submit(feeds, rows, output_names)
                return outputs if type(outputs) is dict else await outputs  # a dict: it ran alone, at once
            if loaded.estimated_cost_s(rows) <= self._inline_max_s:
                return loaded.run(feeds, output_names)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, loaded.run, feeds, output_names)
        except Exception as exc:  # noqa: BLE001 - mapped, not swallowed
            raise run_error(loaded, exc) from None


def per_unit(decoded: Decoded | None, latency_s: float) -> float:
    """A request's latency per unit of work, as the rollout windows judge it, so that large requests do not read as a
    slow version: per row, or per `units` when decoding gave the request a size of its own (text: per text and per 100
    characters, see gateway.requests.text_units). A request that failed before it was decoded counts as one unit."""
    if decoded is None:
        return latency_s
    return latency_s / (decoded.units or decoded.rows)


def run_error(loaded: LoadedModel, error: Exception) -> Exception:
    """onnxruntime's exceptions as gateway errors: refused inputs are the caller's fault (400), the rest a failure.
    (A try/except at each call site rather than a context manager: measurably cheaper on the hot path.)"""
    if isinstance(error, InvalidArgument):
        return InvalidInput(f"onnxruntime refused the inputs: {error}; expected {loaded.signature}")
    if isinstance(error, GatewayError):
        return error
    return ModelRunFailed(f"model {loaded.name!r} {loaded.version} failed to run: {error}")
