"""The dashboard's routes, HTTP only: pages and the overview's fragment behind a UiGuard, the login form, the static
files (public: they hold no data). Store reads run on a worker thread. HTML, not API: left out of /openapi.json (the
README documents them).

    GET  /ui                                     the overview (refreshes itself from the fragment every few seconds)
    GET  /ui/fragments/overview                  the overview's panels, as HTML
    GET  /ui/models/{model}/versions/{version}   one version: metadata, signature, parity, evaluations, approvals,
                                                 history
    GET  /ui/login, POST /ui/login               the login form (token -> session cookie); POST /ui/logout
    GET  /ui/static/{name}                       dashboard.css, dashboard.js
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, request_response

from gateway.data_plane import read_body
from gateway.errors import ADMIN_STORE_STATUS, Forbidden, GatewayError, Unauthorized, admin_error_response, status_for
from gateway.ui.auth import UiAccess, UiGuard, clear_session, set_session, viewer_of
from gateway.ui.panels import Dashboard
from modelstore.errors import StoreError

UI_PREFIX = "/ui"
HERE = Path(__file__).parent
REFRESH_MS = 3000
MAX_LOGIN_BYTES = 4096
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

Handler = Callable[[Request], Awaitable[Response]]


def template_environment() -> jinja2.Environment:
    # autoescape everywhere: model names, reasons and actors come from users
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["percent"] = lambda value, digits=1: "–" if value is None else f"{value:.{digits}%}"
    environment.filters["number"] = lambda value, digits=3: "–" if value is None else f"{value:.{digits}g}"
    environment.filters["when"] = short_time
    return environment


def short_time(value: object) -> str:
    """'2026-01-31T12:00:00Z' as '2026-01-31 12:00:00' (UTC throughout the dashboard)."""
    return str(value).replace("T", " ").removesuffix("Z") if value else "–"


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a /ui path of this site only."""
    if not target or target.startswith("//") or "\\" in target:
        return UI_PREFIX
    path = urlsplit(target)
    if path.scheme or path.netloc or not (path.path == UI_PREFIX or path.path.startswith(UI_PREFIX + "/")):
        return UI_PREFIX
    return target


class UiEndpoints:
    def __init__(self, dashboard: Dashboard, access: UiAccess) -> None:
        self.dashboard = dashboard
        self.access = access
        self.templates = template_environment()
        self.static_files = {path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
                             for path in sorted((HERE / "static").iterdir()) if path.suffix in STATIC_TYPES}

    def routes(self) -> list[Route]:
        guarded: list[tuple[str, Handler, Handler]] = [
            ("", self.overview_page, self.login_page_refusal),
            ("/fragments/overview", self.overview_fragment, self.json_refusal),
            ("/models/{model}/versions/{version}", self.version_page, self.login_page_refusal),
        ]
        return [
            *[Route(UI_PREFIX + path, UiGuard(request_response(self.answering(handler)), self.access, refusal),
                    methods=["GET"], include_in_schema=False) for path, handler, refusal in guarded],
            Route(UI_PREFIX + "/login", self.login_form, methods=["GET"], include_in_schema=False),
            Route(UI_PREFIX + "/login", self.answering(self.login), methods=["POST"], include_in_schema=False),
            Route(UI_PREFIX + "/logout", self.logout, methods=["POST"], include_in_schema=False),
            Route(UI_PREFIX + "/static/{name}", self.static, methods=["GET"], include_in_schema=False),
        ]

    def render(self, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        context.setdefault("viewer", None)
        response = HTMLResponse(self.templates.get_template(name).render(prefix=UI_PREFIX, **context),
                                status_code=status_code)
        response.headers["cache-control"] = "no-store"
        response.headers["x-frame-options"] = "DENY"
        response.headers["content-security-policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                       "frame-ancestors 'none'; form-action 'self'")
        return response

    def answering(self, handler: Handler) -> Handler:
        """The handler, with a failure answered as a page (or, for the fragment, as JSON) with its status."""
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (GatewayError, StoreError) as exc:
                if request.url.path.startswith(UI_PREFIX + "/fragments/"):
                    return admin_error_response(exc, request.method, request.url.path)
                status = status_for(exc, ADMIN_STORE_STATUS)
                return self.render("error.html", status, message=str(exc), status=status)

        endpoint.__name__ = handler.__name__
        return endpoint

    # -- refusals (no credentials) -------------------------------------------------------------------------------

    async def login_page_refusal(self, request: Request) -> Response:
        response = self.render("login.html", 401, error=None, next=safe_next(str(request.url.path)),
                               tokens=self.access.tokens is not None)
        response.headers["www-authenticate"] = 'Bearer realm="onnxgate-ui"'
        return response

    async def json_refusal(self, request: Request) -> Response:
        response = admin_error_response(Unauthorized("log in at /ui/login, or send a bearer token with the "
                                                           "read role"), request.method, request.url.path)
        response.headers["www-authenticate"] = 'Bearer realm="onnxgate-ui"'
        return response

    # -- pages ---------------------------------------------------------------------------------------------------

    async def overview_data(self) -> dict:
        live = await self.dashboard.live()
        return await run_in_threadpool(self.dashboard.overview, live)

    async def overview_page(self, request: Request) -> Response:
        return self.render("overview.html", data=await self.overview_data(), viewer=viewer_of(request),
                           refresh_ms=REFRESH_MS)

    async def overview_fragment(self, request: Request) -> Response:
        return self.render("panels.html", data=await self.overview_data())

    async def version_page(self, request: Request) -> Response:
        model, version = request.path_params["model"], request.path_params["version"]
        data = await run_in_threadpool(self.dashboard.version, model, version)
        return self.render("version.html", data=data, viewer=viewer_of(request))

    # -- logging in and out --------------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.render("login.html", error=None, next=safe_next(request.query_params.get("next")),
                           tokens=self.access.tokens is not None)

    async def login(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Forbidden(f"a login form posted from another site ({origin}) is refused")
        length = request.headers.get("content-length")
        body = await read_body(request.receive, length.encode("latin-1") if length is not None else None,
                               MAX_LOGIN_BYTES)
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        secret = (fields.get("token") or [""])[0].strip()
        target = safe_next((fields.get("next") or [None])[0])
        if self.access.check_secret(secret) is None:
            return self.render("login.html", 401, error="That token is not valid (or has no read role).",
                               next=target, tokens=self.access.tokens is not None)
        response = RedirectResponse(target, status_code=303)
        set_session(response, secret, secure(request))
        return response

    async def static(self, request: Request) -> Response:
        found = self.static_files.get(request.path_params["name"])
        if found is None:
            return self.render("error.html", 404, message="no such file", status=404)
        content, media_type = found
        return Response(content, media_type=media_type, headers={"cache-control": "no-cache"})

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(UI_PREFIX + "/login", status_code=303)
        clear_session(response, secure(request))
        return response
