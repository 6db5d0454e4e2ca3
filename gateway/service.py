"""The data plane: resolve the deployment, pick the version, validate inputs, run, record. No HTTP here, so the same
service could sit behind another transport."""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import anyio
import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from gateway import v2
from gateway.errors import GatewayError, InvalidInput, ModelRunFailed, ModelUnavailable, UnknownEnvironment, outcome_for
from gateway.loader import LoadedModel, load_model
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.pool import Pool, ReloadReport, Route, build_pool
from gateway.settings import GatewaySettings
from gateway.shadow import Shadows
from gateway.traffic import Arm, TrafficWindows, choose_arm, choose_shadow
from gateway.validation import Decoded, check_names, coerce, parse_json, rows_of
from modelstore.errors import ModelNotFound, NotDeployed, StoreError, VersionNotFound
from modelstore.layout import Store
from modelstore.outputs import format_outputs

log = logging.getLogger("onnxgate.gateway")


AnswerArm = Literal["stable", "canary", "pinned"]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more per request
class Answer:
    model: str
    version: str
    environment: str
    outputs: dict[str, np.ndarray]
    loaded: LoadedModel
    request_id: object = None
    arm: AnswerArm = "stable"
    mirror: Callable[[], Awaitable[None]] | None = None  # the shadow run, for after the response is sent

    def as_json(self) -> dict:
        return {"model": self.model, "version": self.version, "environment": self.environment, "arm": self.arm,
                "outputs": format_outputs(self.loaded.metadata, self.outputs)}


class Service:
    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.store = Store(settings.store)
        self.metrics = metrics
        self.environments = list(settings.environments)
        self.default_environment = self.environments[0]
        self.pool = Pool()
        self.last_reload: ReloadReport | None = None
        self._max_rows = settings.max_batch_rows
        self._inline_max_s = settings.inline_run_max_ms / 1000
        self._executor = ThreadPoolExecutor(max_workers=settings.run_threads, thread_name_prefix="onnxgate-run")
        self._reload_lock = asyncio.Lock()
        self._pinned: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._rng = random.Random()
        # rollout: what each arm measured (the judge reads it), and versions the judge stopped routing to before
        # registry.json says so: (model, environment) -> the withheld canary, or the stable version of a failed bake
        self.windows = TrafficWindows(horizon_s=max(60.0, 2 * settings.slo_limits.window_s))
        self.withheld: dict[tuple[str, str], str] = {}
        self.shadows = Shadows(metrics, settings.shadow_rtol, settings.shadow_atol)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.last_reload is not None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def load(self, store: Store, name: str, version: str) -> LoadedModel:
        return load_model(store, name, version, cost_limit_s=self._inline_max_s)

    async def reload(self) -> ReloadReport:
        """Build a new pool on a worker thread and swap it in with one assignment."""
        async with self._reload_lock:
            started = time.time()
            clock = time.perf_counter()
            self.metrics.reloads.inc()
            try:
                pool = await anyio.to_thread.run_sync(build_pool, self.store, self.environments, self.pool, self.load)
            except StoreError as exc:
                self.metrics.reload_failures.labels("").inc()
                report = ReloadReport(started, False, str(exc), time.perf_counter() - clock)
                log.warning("reload failed, keeping the previous models: %s", exc)
            else:
                new_failures = [key for key, failure in pool.failures.items() if self.pool.failures.get(key) != failure]
                for model, version in new_failures:
                    self.metrics.reload_failures.labels(model).inc()
                    log.warning("not loading %s %s: %s", model, version, pool.failures[(model, version)].error)
                self.pool = pool
                self._pinned.clear()
                self._publish_gauges(pool)
                errors = "; ".join(f.error for f in pool.failures.values()) or None
                report = ReloadReport(started, errors is None, errors, time.perf_counter() - clock)
            self.last_reload = report
            return report

    def _publish_gauges(self, pool: Pool) -> None:
        self.metrics.models_loaded.set(len(pool.models))
        for loaded in pool.models.values():
            self.metrics.model_load_seconds.labels(loaded.name, loaded.version).set(loaded.load_seconds)
        for env, routes in pool.routes.items():
            for route in routes.values():
                self.metrics.canary_weight.labels(route.model, env).set(self.canary_weight(route))
                for arm in (route.stable, route.canary, route.previous):
                    if arm is not None:
                        arm.metrics_for(self.metrics, env)

    def canary_weight(self, route: Route) -> float:
        """The percentage of traffic the canary really gets: 0 when it is not loaded or has been withheld."""
        canary = route.canary
        if canary is None or self.withheld.get((route.model, route.environment)) == canary.version:
            return 0.0
        return route.deployment.canary.weight

    def withhold(self, model: str, environment: str, version: str) -> None:
        """Stop routing to `version` (a canary, or a stable version in a failed bake) at once, in memory."""
        self.withheld[(model, environment)] = version
        route = self.pool.route(environment, model)
        if route is not None:
            self.metrics.canary_weight.labels(model, environment).set(self.canary_weight(route))

    # -- resolving ---------------------------------------------------------------------------------------------

    def environment(self, requested: str | None) -> str:
        if requested is None:
            return self.default_environment
        if requested not in self.environments:
            raise UnknownEnvironment(f"environment {requested!r} is not served here (served: "
                                     f"{', '.join(self.environments)})")
        return requested

    def route(self, model: str, environment: str) -> Route:
        pool = self.pool
        route = pool.route(environment, model)
        if route is None:
            if model in pool.registry.models:
                raise NotDeployed(f"model {model!r} has nothing deployed to environment {environment!r}")
            raise ModelNotFound(f"model {model!r} not found")
        return route

    async def resolve(self, model: str, environment: str, version: str | None = None) -> LoadedModel:
        """The version that answers plain (unkeyed, unsplit) requests: the pinned one, or the stable one."""
        if version is not None:
            return await self.pinned(model, version)
        return self.select(self.route(model, environment), None, split=False)[0]

    def select(self, route: Route, routing_key: str | None, *, split: bool = True) -> tuple[LoadedModel, Arm]:
        """The canary for its share of traffic (sticky by routing key), else stable. A withheld canary gets nothing;
        a withheld stable version (a failed bake) gives way to the version it replaced, when that is loaded."""
        stable = route.stable
        if route.watched:
            withheld = self.withheld.get((route.model, route.environment))
            canary = route.canary
            if (split and canary is not None and canary.version != withheld
                    and choose_arm(route.deployment, routing_key, self._rng)[0] == "canary"):
                return canary, "canary"
            if withheld is not None and stable is not None and stable.version == withheld and route.previous:
                stable = route.previous
        if stable is None:
            raise ModelUnavailable(f"model {route.model!r} {route.deployment.version} in {route.environment!r} is not "
                                   f"loaded: {route.error or 'not loaded yet'}")
        return stable, "stable"

    async def pinned(self, model: str, version: str) -> LoadedModel:
        """A specific version: a loaded one, or one loaded on demand (verified like any other) for debugging."""
        pool = self.pool
        loaded = pool.models.get((model, version)) or self._pinned.get((model, version))
        if loaded is not None:
            return loaded
        versions = pool.registry.models.get(model)
        if versions is None:
            raise ModelNotFound(f"model {model!r} not found")
        if version not in versions:
            raise VersionNotFound(f"model {model!r} has no version {version!r}")
        try:
            loaded = await anyio.to_thread.run_sync(self.load, self.store, model, version)
        except StoreError as exc:
            raise ModelUnavailable(f"model {model!r} {version} cannot be loaded: {exc}") from None
        if self.settings.pinned_cache_size:
            self._pinned[(model, version)] = loaded
            while len(self._pinned) > self.settings.pinned_cache_size:
                self._pinned.popitem(last=False)
        return loaded

    # -- answering ---------------------------------------------------------------------------------------------

    async def predict(self, model: str, environment: str | None, body: bytes, version: str | None = None,
                      routing_key: str | None = None) -> Answer:
        """The /predict call: `{"inputs": [[...]]}`, `{"inputs": {"name": [[...]]}}` or `{"text": [...]}`."""
        return await self.answer(model, environment, version, routing_key,
                                 lambda loaded: self.predict_feeds(loaded, parse_json(body)))

    async def infer(self, model: str, environment: str | None, body: bytes, version: str | None = None,
                    routing_key: str | None = None) -> Answer:
        """The Open Inference Protocol (v2) infer call."""
        return await self.answer(model, environment, version, routing_key,
                                 lambda loaded: v2.decode_request(parse_json(body), loaded, self._max_rows))

    async def answer(self, model: str, environment: str | None, version: str | None, routing_key: str | None,
                     decode: Callable[[LoadedModel], Decoded]) -> Answer:
        route: Route | None = None
        arm: AnswerArm = "pinned"
        try:
            env = self.default_environment if environment is None else self.environment(environment)
            if version is None:  # resolves without a coroutine; a pin may load a version on demand
                route = self.route(model, env)
                loaded, arm = self.select(route, routing_key)
            else:
                loaded = await self.pinned(model, version)
        except (GatewayError, StoreError) as exc:
            self.rejected(model, environment, exc)
            raise
        children = loaded.metrics.get(env) or loaded.metrics_for(self.metrics, env)
        started = time.perf_counter()
        try:
            decoded = decode(loaded)
            feeds, rows, output_names = decoded.feeds, decoded.rows, decoded.output_names
            if loaded.base_cost_s + loaded.row_cost_s * rows <= self._inline_max_s:
                outputs = self.run_inline(loaded, feeds, output_names)
            else:
                outputs = await self.run(loaded, feeds, rows, output_names)
        except GatewayError as exc:
            elapsed = time.perf_counter() - started
            children.record(exc.outcome, elapsed)
            if route is not None and route.watched and exc.status_code >= 500:  # the caller's mistakes judge no version
                self.windows.record(model, env, arm, loaded.version, elapsed, False, time.time())
            raise
        elapsed = time.perf_counter() - started
        children.record("ok", elapsed)
        label_output = loaded.metadata.label_output
        if label_output is not None and label_output in outputs:
            children.record_classes(outputs[label_output])
        mirror = None
        if route is not None and route.watched:
            self.windows.record(model, env, arm, loaded.version, elapsed, True, time.time())
            shadow = route.shadow
            if shadow is not None and arm == "stable" and choose_shadow(route.deployment, routing_key, self._rng):
                mirror = functools.partial(self.mirror, env, loaded, shadow, decode, outputs)
        return Answer(model, loaded.version, env, outputs, loaded, decoded.request_id, arm, mirror)

    async def mirror(self, environment: str, stable: LoadedModel, shadow: LoadedModel,
                     decode: Callable[[LoadedModel], Decoded], stable_outputs: dict[str, np.ndarray]) -> None:
        """The shadow's run of a request stable has already answered: measured and compared, never returned, and
        never raising (it runs after the response, where an exception would only reach the server's log)."""
        started = time.perf_counter()
        shadow_outputs = None
        try:
            decoded = decode(shadow)
            shadow_outputs = await self.run(shadow, decoded.feeds, decoded.rows, decoded.output_names)
        except GatewayError as exc:
            log.debug("shadow %s %s failed: %s", shadow.name, shadow.version, exc)
        except Exception:  # noqa: BLE001 - a shadow's failure must never surface
            log.exception("shadow %s %s failed", shadow.name, shadow.version)
        latency = time.perf_counter() - started
        self.windows.record(shadow.name, environment, "shadow", shadow.version, latency, shadow_outputs is not None,
                            time.time())
        self.shadows.record(environment, stable, shadow, stable_outputs, shadow_outputs, latency)

    def rejected(self, model: str, environment: str | None, error: Exception) -> None:
        """Count a request refused before a model was resolved. Names from URLs and headers become label values
        only when the registry or the settings know them."""
        env = environment if environment in self.environments else ""
        if environment is None:
            env = self.default_environment
        self.metrics.rejected(model if model in self.pool.registry.models else UNKNOWN_MODEL, env, outcome_for(error))

    def predict_feeds(self, loaded: LoadedModel, payload: object) -> Decoded:
        if not isinstance(payload, dict):
            raise InvalidInput(f'body must be a JSON object with "inputs" or "text"; expected {loaded.signature}')
        if "text" in payload:
            if loaded.text is None:
                raise InvalidInput(f"model {loaded.name!r} takes no raw text; expected {loaded.signature}")
            feeds = loaded.text.encode(payload["text"], self._max_rows)
            return Decoded(feeds, len(payload["text"]))
        if "inputs" not in payload:
            raise InvalidInput(f'body must have "inputs" (or "text" for text models); expected {loaded.signature}')
        inputs = payload["inputs"]
        specs = loaded.inputs
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise InvalidInput(f"model {loaded.name!r} has {len(specs)} inputs: name them, "
                                   f'{{"inputs": {{"name": [...]}}}}; expected {loaded.signature}')
            [spec] = specs.values()
            array = coerce(spec, inputs, loaded.signature, self._max_rows)
            return Decoded({spec.name: array}, array.shape[0] if array.ndim else 1)  # rows_of, for one input
        check_names(inputs, specs, loaded.signature)
        feeds = {name: coerce(spec, inputs[name], loaded.signature, self._max_rows) for name, spec in specs.items()}
        return Decoded(feeds, rows_of(feeds))

    def run_inline(self, loaded: LoadedModel, feeds: dict[str, np.ndarray],
                   output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        """`run` for a model cheap enough to run on the event loop, without a coroutine; same error mapping."""
        try:
            return loaded.run(feeds, output_names)
        except Exception as exc:  # noqa: BLE001 - mapped, not swallowed
            raise run_error(loaded, exc) from None

    async def run(self, loaded: LoadedModel, feeds: dict[str, np.ndarray], rows: int,
                  output_names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Inline when the model's measured cost for this many rows is below the threshold (a thread hop would cost
        more than the run), else on the run executor so the event loop keeps accepting requests."""
        try:
            if loaded.estimated_cost_s(rows) <= self._inline_max_s:
                return loaded.run(feeds, output_names)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, loaded.run, feeds, output_names)
        except Exception as exc:  # noqa: BLE001 - mapped, not swallowed
            raise run_error(loaded, exc) from None


def run_error(loaded: LoadedModel, error: Exception) -> Exception:
    """onnxruntime's exceptions as gateway errors: refused inputs are the caller's fault (400), the rest a failure.
    (A try/except at each call site rather than a context manager: measurably cheaper on the hot path.)"""
    if isinstance(error, InvalidArgument):
        return InvalidInput(f"onnxruntime refused the inputs: {error}; expected {loaded.signature}")
    if isinstance(error, GatewayError):
        return error
    return ModelRunFailed(f"model {loaded.name!r} {loaded.version} failed to run: {error}")
