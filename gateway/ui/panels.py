"""What the dashboard shows, as plain data for its templates: read from the store (the registry, metadata, the audit
log: modelstore.overview, as the CLI and the ops API read it), from this gateway process (each route's rollout state
and the windows its judge read: gateway.controller; live drift: gateway.drift_monitor), from the capture files (live
quality: monitoring.quality) and from the retraining job records (gateway/ui/retrain_jobs.py).

`Dashboard.overview` and `Dashboard.version` block (files): call them on a worker thread, with what the event loop
owns (`LiveState`) taken beforehand on the loop.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.metrics import DriftFigures
from gateway.ui.charts import window_charts
from gateway.ui.retrain_jobs import recent_jobs
from modelstore import overview
from modelstore.backends import ModelRepository
from modelstore.clock import utc_now
from modelstore.errors import StoreError, VersionNotFound
from modelstore.registry import Deployment, RegistryData
from modelstore.versions import shown
from monitoring.drift import DriftThresholds
from monitoring.quality import live_quality

AUDIT_TAIL = 15
QUALITY_SINCE_S = 7 * 24 * 3600.0  # as GET /quality's default
JOBS_SHOWN = 8


@dataclass(frozen=True)
class LiveState:
    """What this gateway process holds in memory, taken on the event loop."""

    rollouts: list[dict] = field(default_factory=list)
    drift: list[DriftFigures] = field(default_factory=list)


class Dashboard:
    def __init__(self, store: ModelRepository, store_root: Path, environments: list[str], *,
                 rollouts: Callable[[], list[dict]] = list, drift: Callable[[], list[DriftFigures]] = list,
                 drift_enabled: bool = False, drift_thresholds: DriftThresholds | None = None,
                 refresh_drift: Callable[[], Awaitable[None]] | None = None) -> None:
        """`refresh_drift`: recomputes what `drift` returns (the gauges' figures are computed when read, not by a
        timer: gateway.service.Service.refresh_drift_figures)."""
        self.store = store
        self.store_root = Path(store_root)
        self.environments = environments
        self._rollouts = rollouts
        self._drift = drift
        self._refresh_drift = refresh_drift
        self.drift_enabled = drift_enabled
        self.drift_thresholds = drift_thresholds or DriftThresholds()

    async def live(self) -> LiveState:
        """Event loop only."""
        if self._refresh_drift is not None and self.drift_enabled:
            await self._refresh_drift()
        return LiveState(self._rollouts(), list(self._drift()))

    # -- the overview --------------------------------------------------------------------------------------------

    def overview(self, live: LiveState) -> dict:
        registry = self.store.registry.read().state
        served = {(row["model"], row["environment"]): row for row in live.rollouts}
        environments = sorted({env for by_env in registry.deployments.values() for env in by_env} | set(self.environments),
                              key=lambda env: (env not in self.environments, env))
        return {
            "generated_at": utc_now(),
            "served_environments": self.environments,
            "environments": [{"name": env, "served": env in self.environments,
                              "rows": self.deployment_rows(registry, env, served)} for env in environments],
            "invalid": overview.invalid_deployments(registry),
            "drift_enabled": self.drift_enabled,
            "drift": [drift_row(figures, self.drift_thresholds)
                      for figures in sorted(live.drift, key=lambda f: (f.model, f.environment))],
            "drift_thresholds": self.drift_thresholds.model_dump(),
            "quality": self.quality_rows(live.rollouts),
            "jobs": recent_jobs(self.store_root, JOBS_SHOWN),
            "audit": list(reversed(overview.history(self.store, limit=AUDIT_TAIL))),
        }

    def deployment_rows(self, registry: RegistryData, environment: str, served: dict) -> list[dict]:
        rows = []
        for model, by_env in sorted(registry.deployments.items()):
            deployment = by_env.get(environment)
            if deployment is not None:
                rows.append(deployment_row(model, deployment, served.get((model, environment))))
        return rows

    def quality_rows(self, rollouts: list[dict]) -> list[dict]:
        rows = []
        for route in rollouts:
            try:
                report = live_quality(self.store_root, route["model"], route["environment"], QUALITY_SINCE_S)
            except (OSError, ValueError) as exc:
                rows.append({"model": route["model"], "environment": route["environment"], "error": str(exc)})
                continue
            rows.append(report.as_json())
        return rows

    # -- one version ---------------------------------------------------------------------------------------------

    def version(self, model: str, version: str) -> dict:
        """One version's page. Unknown model or version: the store's ModelNotFound / VersionNotFound."""
        if version not in self.store.list_versions(model):  # raises ModelNotFound, InvalidName
            raise VersionNotFound(f"model {model!r} has no version {shown(version)}")
        registry = self.store.registry.read().state
        record = registry.models.get(model, {}).get(version)
        try:
            metadata = self.store.read_metadata(model, version).model_dump(mode="json")
            metadata_error = None
        except StoreError as exc:
            metadata, metadata_error = None, str(exc)
        required = overview.required_approvals(self.store)
        approvals = {}
        if record is not None:
            for environment in sorted(record.approvals):
                approvals[environment] = {
                    "summary": {kind: overview.approval_summary(record, environment, required(environment), kind)
                                for kind in ("deploy", "rollback") if record.approvals_for(environment, kind)},
                    "decisions": [decision.model_dump(mode="json") for decision in record.approvals[environment]]}
        roles = [(env, role) for env, deployment in sorted(registry.deployments.get(model, {}).items())
                 for role in version_roles(deployment, version)]
        history = [entry for entry in overview.history(self.store, model=model, limit=0)
                   if version in (entry.get("before"), entry.get("after"), (entry.get("details") or {}).get("version"))]
        return {"model": model, "version": version, "metadata": metadata, "metadata_error": metadata_error,
                "record": record.model_dump(mode="json", exclude={"approvals", "evaluation"}) if record else None,
                "evaluation": record.evaluation.model_dump(mode="json") if record and record.evaluation else None,
                "approvals": approvals, "roles": roles, "history": list(reversed(history)),
                "generated_at": utc_now()}


def version_roles(deployment: Deployment, version: str) -> list[str]:
    roles = []
    if deployment.version == version:
        roles.append("stable")
    if deployment.canary is not None and deployment.canary.version == version:
        roles.append(f"canary {deployment.canary.weight:g}%")
    if deployment.shadow is not None and deployment.shadow.version == version:
        roles.append(f"shadow {deployment.shadow.weight:g}%")
    return roles


def deployment_row(model: str, deployment: Deployment, served: dict | None) -> dict:
    """One model in one environment: the registry's deployment, with what this gateway measures when it serves it."""
    rollout = (served or {}).get("rollout", {})
    canary = None
    if deployment.canary is not None:
        state = deployment.canary
        live = rollout.get("canary", {})
        canary = {"version": state.version, "weight": state.weight, "steps": state.steps,
                  "interval_s": state.interval_s, "step_started_at": state.step_started_at,
                  "effective_weight": live.get("effective_weight"), "withheld": live.get("withheld", False),
                  "loaded": live.get("loaded"), "promotion_refused": live.get("promotion_refused")}
    shadow = None
    if deployment.shadow is not None:
        live = rollout.get("shadow", {})
        shadow = {"version": deployment.shadow.version, "weight": deployment.shadow.weight,
                  "mirrored": live.get("mirrored"), "verdict": live.get("verdict"),
                  "reasons": live.get("verdict_reasons", [])}
    bake = None
    if deployment.bake is not None:
        bake = {"previous_version": deployment.bake.previous_version, "until": deployment.bake.until,
                "active": rollout.get("bake", {}).get("active")}
    return {"model": model, "version": deployment.version, "deployed_at": deployment.deployed_at,
            "status": deployment.status, "canary": canary, "shadow": shadow, "bake": bake,
            "served": served is not None, "loaded": served["loaded"] if served else None,
            "last_verdict": rollout.get("last_verdict"), "last_rollback": deployment.last_rollback,
            "charts": window_charts(served["windows"]) if served else []}


def drift_row(figures: DriftFigures, thresholds: DriftThresholds) -> dict:
    """One route's live drift; a feature is `over` when its PSI or KS statistic is above its threshold (what
    monitoring.drift counts as drifted)."""
    return {"model": figures.model, "environment": figures.environment, "status": figures.status,
            "window_rows": figures.window_rows, "drifted_share": figures.drifted_share,
            "prediction_psi": figures.prediction_psi,
            "features": [{"name": name, "psi": psi, "ks": ks,
                          "over": (psi is not None and psi > thresholds.psi) or (ks is not None and ks > thresholds.ks)}
                         for name, psi, ks in figures.features]}
