"""HTTP for labelled feedback and live quality: `POST /feedback/{model}` and `GET /quality/{model}?since=7d`, the
environment by X-Environment as elsewhere. The work (reading capture files, appending labels, joining) runs on a
worker thread, never on the event loop; the capture files it reads are size-bounded (monitoring/capture.py)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.data_plane import read_body
from gateway.errors import InvalidInput
from gateway.service import Service
from gateway.validation import parse_json
from modelstore.errors import ModelNotFound
from modelstore.versions import shown
from monitoring.capture import CapturedIds
from monitoring.feedback import Feedback, InvalidFeedback, append_labels, parse_feedback
from monitoring.quality import InvalidDuration, live_quality, parse_duration

ENVIRONMENT_HEADER = "x-environment"
DEFAULT_SINCE = "7d"


class FeedbackEndpoints:
    def __init__(self, service: Service, check_content_type: Callable[[bytes | None], None]) -> None:
        self.service = service
        self.store_root = Path(service.settings.store)
        self.max_body_bytes = service.settings.max_body_bytes
        self.check_content_type = check_content_type
        self._ids: dict[tuple[str, str], CapturedIds] = {}
        self._lock = threading.Lock()  # one matcher at a time: the id caches are not thread-safe

    def model_and_environment(self, request: Request) -> tuple[str, str]:
        model = request.path_params["model"]
        environment = self.service.environment(request.headers.get(ENVIRONMENT_HEADER))
        self.check_model(model)
        return model, environment

    def check_model(self, model: str) -> None:
        if model not in self.service.pools.pool.registry.models:
            raise ModelNotFound(f"model {shown(model)} not found")

    async def feedback(self, request: Request) -> Response:
        model, environment = self.model_and_environment(request)
        content_type = request.headers.get("content-type")
        self.check_content_type(content_type.encode("latin-1") if content_type is not None else None)
        length = request.headers.get("content-length")
        body = await read_body(request.receive, length.encode("latin-1") if length is not None else None,
                               self.max_body_bytes)
        try:
            items = parse_feedback(parse_json(body))
        except InvalidFeedback as exc:
            raise InvalidInput(str(exc)) from None
        matched = await anyio.to_thread.run_sync(self.record, model, environment, items)
        return Response(orjson.dumps({"model": model, "environment": environment, "received": len(items),
                                      "matched": matched, "unknown": len(items) - matched}),
                        media_type="application/json")

    def record(self, model: str, environment: str, items: list[Feedback]) -> int:
        """Append the labels and count those whose id was captured for this model and environment."""
        with self._lock:
            ids = self._ids.get((model, environment))
            if ids is None:
                ids = self._ids[(model, environment)] = CapturedIds(self.store_root, model, environment)
            ids.refresh()
            matched = sum(item.id in ids for item in items)
            append_labels(self.store_root, model, environment, items, time.time())
        return matched

    async def quality(self, request: Request) -> Response:
        model, environment = self.model_and_environment(request)
        report = await self.quality_report(model, environment, request.query_params.get("since"))
        return Response(orjson.dumps(report), media_type="application/json")

    async def quality_report(self, model: str, environment: str, since: str | None) -> dict:
        """GET /quality's report (and the ops API's), over `since` (default 7d)."""
        self.check_model(model)
        try:
            since_s = parse_duration(since if since is not None else DEFAULT_SINCE)
        except InvalidDuration as exc:
            raise InvalidInput(f"query parameter since: {exc}") from None
        report = await anyio.to_thread.run_sync(live_quality, self.store_root, model, environment, since_s)
        return report.as_json()
