"""The gateway's settings: one pydantic-settings model, read from ONNXGATE_* environment variables."""
from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelstore.errors import InvalidSloPolicy
from modelstore.layout import resolve_store_root
from modelstore.metadata import BatchingPolicy
from modelstore.slo import SloLimits, SloPolicy, resolve_limits
from monitoring.drift import DriftThresholds

MIB = 1 << 20
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONNXGATE_", extra="ignore")

    store: Path = Field(default_factory=lambda: resolve_store_root(None))
    registry_url: str | None = Field(default=None, description="the registry and audit log in this PostgreSQL database "
                                     "(postgresql://...; modelstore/pg_registry.py), followed by LISTEN/NOTIFY; unset: "
                                     "registry.json under `store`. The versions' files stay under `store` either way")
    artifacts_url: str | None = Field(default=None, description="versions' files in an object store, "
                                      "s3://bucket/prefix (modelstore/s3_artifacts.py; needs onnxgate[s3]); endpoint "
                                      "and credentials from the AWS_* variables; None: in the store directory")
    artifacts_poll_s: float = Field(default=5.0, gt=0, description="with artifacts_url: compare the bucket's listing "
                                    "(names, ETags) this often, so a changed object is noticed without a registry "
                                    "change (each poll is one LIST request per 1000 objects)")
    environments: list[str] = Field(default_factory=lambda: ["production"], min_length=1,
                                    description="served environments; the first answers requests without X-Environment")
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="also serve the Open Inference Protocol's "
                                  "GRPCInferenceService on this port (gateway/grpc_service.py; needs onnxgate[grpc]); "
                                  "0: any free port")
    admin_tokens: Path | None = Field(default=None, description="the tokens file of the ops API (gateway/admin/): "
                                      "with it, /admin/v1/ is served; without it, those routes do not exist (404)")
    admin_port: int | None = Field(default=None, ge=0, le=65535, description="also serve the ops API on this port "
                                   "(a second server in the same process); 0: any free port; needs admin_tokens")
    admin_host: str | None = Field(default=None, description="the address the ops API's own port listens on "
                                   "(default: host)")
    ui_public: bool = Field(default=False, description="serve the dashboard (/ui) to anyone who reaches it, without "
                            "a token: only for a private network. Otherwise /ui needs a token with the read role (or "
                            "more), and exists only when admin_tokens is set")
    workers: int = Field(default=1, ge=1)
    access_log: bool = False
    max_body_bytes: int = Field(default=8 * MIB, gt=0)
    max_batch_rows: int = Field(default=1024, gt=0)
    reload_debounce_ms: int = Field(default=50, ge=1, description="watchfiles debounce: changes closer than this are one")
    registry_poll_s: float = Field(default=0.5, gt=0, description="fallback: stat registry.json this often")
    inline_run_max_ms: float = Field(
        default=2.0, ge=0,
        description="session.run runs on the event loop when its measured cost for the batch is below this; "
        "above it, on a worker thread (measured: inline wins up to ~2 ms per run on 2 cores)",
    )
    run_threads: int = Field(default=2, ge=1, description="threads for session.run calls too slow to run inline")
    joined_run_thread_min_ms: float = Field(
        default=0.1, ge=0,
        description="adaptive batching: a joined run goes to a run thread when its measured cost is at least this, so "
        "the event loop parses the next batch's requests meanwhile; below it the thread hop costs more than it frees "
        "(bench/batching.py: the logistic regression's joined runs, ~15 µs, lost ~15-40% on a thread; the MLP's and "
        "the text model's, 0.2-9 ms, gained)",
    )
    batching: BatchingPolicy = Field(
        default_factory=BatchingPolicy, description="adaptive batching, every version's default, e.g. "
        'ONNXGATE_BATCHING=\'{"enabled": true, "max_batch_size": 32, "max_queue_delay_ms": 0}\'; a version\'s '
        "metadata.json `batching` overrides the fields it sets (gateway/batching.py)")
    # Pinned versions (?version=, /v2/models/m/versions/v): which may be served, and how on-demand loads are bounded.
    pin_any_version: bool = Field(default=False, description="pins may name any registered version, not only those "
                                  "the served environments deploy or deployed just before; rolled-back versions never")
    pinned_cache_size: int = Field(default=8, ge=0, description="pinned versions the pool does not hold, kept loaded "
                                   "after an on-demand load (least recently used first out); 0: no on-demand loads")
    pinned_min_residency_s: float = Field(
        default=60.0, ge=0, description="a pinned version stays cached at least this long: a pin that would evict one "
        "loaded more recently is refused with 503, so cycling versions costs at most pinned_cache_size loads per period")
    slo: SloPolicy = Field(default_factory=SloPolicy, description="the SLO judge's defaults, e.g. ONNXGATE_SLO="
                           '\'{"window_s": 10, "max_error_rate": 0.01}\'; a deployment\'s own slo overrides them')
    rollout_tick_s: float = Field(default=1.0, gt=0, description="how often the rollout judge looks at the windows")
    quality_refresh_s: float = Field(default=5.0, gt=0, description="how often the live quality figures of a canary "
                                     "judged on quality are fetched (gateway/quality_feed.py)")
    gate_retry_s: float = Field(default=60.0, gt=0, description="a promotion the governance gates refused is tried "
                                "again after this long (each refusal is an audit entry): time for an approval or an "
                                "evaluation to be recorded")
    shadow_rtol: float = Field(default=1e-3, ge=0, description="shadow agreement for non-label outputs: np.isclose rtol")
    shadow_atol: float = Field(default=1e-6, ge=0, description="shadow agreement for non-label outputs: np.isclose atol")
    metrics_dir: Path | None = Field(default=None, description="several workers: where each writes its metrics snapshot "
                                     "and reads the others' (gateway/worker_metrics.py); onnxgate serve sets it")
    metrics_flush_s: float = Field(default=1.0, gt=0, description="how often a worker writes its metrics snapshot")
    events_enabled: bool = Field(default=True, description="run the store's event sender (webhooks/: the audit events "
                                 "POSTed to the subscribers of events.toml); one process per store sends, the others "
                                 "wait on its lock")
    # Live drift (gateway/drift_monitor.py): every served row of a version with reference statistics, in a window
    drift_enabled: bool = Field(default=True, description="count served rows of versions with reference statistics "
                                "into a live drift window (GET /drift/{model}, drift_* gauges). It costs ~3.5-5% CPU "
                                "per request on the benchmark's logistic regression (30 features, batch 1; "
                                "bench/drift_cost.py), within the 5% budget; less on models that cost more per row")
    drift_window_rows: int = Field(default=10_000, gt=0, description="the window: this many of the latest rows, across "
                                   "all workers")
    drift_window_s: float | None = Field(default=None, gt=0, description="also only the rows of the last this many "
                                         "seconds; unset: rows only")
    drift_thresholds: DriftThresholds = Field(
        default_factory=DriftThresholds, description='the verdict\'s thresholds, e.g. ONNXGATE_DRIFT_THRESHOLDS=\'{"psi": '
        '0.25, "ks": 0.1, "drifted_share": 0.3, "min_rows": 500}\'; fields not given keep their defaults')
    drift_flush_s: float = Field(default=1.0, gt=0, description="with several workers, how often a worker counts its "
                                 "buffered rows and writes its window snapshot for the others; with a time window, how "
                                 "often it counts them (rows are dated when counted)")
    drift_max_feature_labels: int = Field(default=20, ge=0, description="per-feature drift gauges only for models with "
                                          "at most this many features (bounded label values)")
    # The HTTP edge (gateway/server.py): what one client may take of a worker, and when decoding leaves the event loop
    max_header_bytes: int = Field(default=64 * 1024, gt=0, description="request line and headers: over it, 431")
    max_headers: int = Field(default=100, gt=0, description="header fields per request: over it, 431")
    header_timeout_s: float = Field(default=10.0, gt=0, description="a request's headers must be complete this long "
                                    "after the connection opens or the request's first byte arrives: else 408, closed")
    body_timeout_s: float = Field(default=30.0, gt=0, description="a request's body must be complete this long after "
                                  "its headers: else 408, closed")
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, description="an idle keep-alive connection is closed after "
                                        "this long (uvicorn's timeout_keep_alive)")
    max_connections: int = Field(default=1000, gt=0, description="open connections per worker; requests on "
                                 "connections beyond it get 503")
    worker_healthcheck_timeout_s: int = Field(
        default=30, gt=0, description="with several workers, uvicorn's supervisor kills a worker that does not answer "
        "its ping within this long (uvicorn's default, 5 s, killed workers still starting on a loaded machine)")
    inline_decode_max_bytes: int = Field(
        default=16 * 1024, ge=0,
        description="requests with bodies up to this size are decoded (tokenized, converted) on the event loop; "
        "larger ones on a worker thread, so that one big text request does not stall every other request")

    # -- the routing key: only from the header the operator names --
    routing_header: str | None = Field(
        default=None, description="the one request header trusted for the routing key (set by the operator's proxy "
        "or auth layer, e.g. X-User); unset: no client header is trusted and the canary split is random, not sticky")
    max_routing_key_bytes: int = Field(default=256, gt=0, description="a longer routing key is refused (400)")

    # -- data capture (gateway/capture.py, monitoring/capture.py) --
    capture_rate: float = Field(default=0.0, ge=0, le=1, description="share of answered requests captured to the "
                                "store, for deployments that set no rate of their own (onnxgate capture); 0: off")
    capture_queue_size: int = Field(default=1024, ge=1, description="answers waiting for the capture writer; when "
                                    "full, further ones are dropped and counted (capture_records_total)")
    capture_file_max_bytes: int = Field(default=16 * MIB, gt=0, description="a capture file is rotated at this size")
    capture_total_max_bytes: int = Field(default=256 * MIB, gt=0, description="capture files kept per model and "
                                         "environment (all workers together): the oldest are deleted beyond it")

    @property
    def slo_limits(self) -> SloLimits:
        return resolve_limits(self.slo)

    @field_validator("slo")
    @classmethod
    def _valid_slo(cls, value: SloPolicy) -> SloPolicy:
        try:
            value.checked()
        except InvalidSloPolicy as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("routing_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        """Lowercased, as ASGI servers hand header names over; an empty value (ONNXGATE_ROUTING_HEADER=) is unset."""
        if value is None or not value.strip():
            return None
        if not HEADER_NAME.fullmatch(value):
            raise ValueError(f"routing_header {value!r} is not an HTTP header name")
        if value.lower() in ("x-environment", "content-length", "content-type", "host", "transfer-encoding",
                             "inference-header-content-length", "x-request-id"):
            raise ValueError(f"routing_header {value!r} already means something else to the gateway")
        return value.lower()

    @model_validator(mode="after")
    def _capture_bounds(self) -> GatewaySettings:
        if self.capture_total_max_bytes < self.capture_file_max_bytes:
            raise ValueError("capture_total_max_bytes must be at least capture_file_max_bytes")
        return self

    @model_validator(mode="after")
    def _admin_port_needs_tokens(self) -> GatewaySettings:
        if self.admin_port is not None and self.admin_tokens is None:
            raise ValueError("admin_port needs admin_tokens: the ops API is only served with its tokens file")
        return self

    @field_validator("environments")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))
