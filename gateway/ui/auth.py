"""Who may see the dashboard: a token with the read role (any role has it), from an `Authorization: Bearer` header or
from the session cookie the login form sets; or anyone, when the operator made /ui public (settings.ui_public).

The cookie holds the token's secret itself (HttpOnly, SameSite=Strict, Path=/ui, Secure over https), checked like a
bearer header on every request: nothing to sign, removing a token from the tokens file ends its sessions at once, and
every worker (and the ops API's own port) accepts it. The dashboard only reads, so SameSite=Strict leaves a forged
cross-site request nothing to do; the login form also refuses a POST whose Origin is another site.

`UiGuard` wraps every data-bearing /ui route (a plain ASGI app, as gateway/admin/auth.Guard): without credentials a
page answers 401 with the login form, a fragment 401 with `{"error": ...}`; never data.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin.auth import TokenTable, allows, authorization_header
from gateway.admin.tokens import TokenEntry

COOKIE_NAME = "onnxgate_ui"
COOKIE_PATH = "/ui"
SESSION_S = 12 * 3600
VIEWER_SCOPE_KEY = "onnxgate.ui_viewer"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a token's name and role, or the public."""

    name: str
    role: str

    @property
    def public(self) -> bool:
        return self.role == "public"


PUBLIC = Viewer("public", "public")


@dataclass(frozen=True)
class UiAccess:
    tokens: TokenTable | None
    public: bool = False

    def check_secret(self, secret: str) -> TokenEntry | None:
        """The read-capable token `secret` is, else None."""
        if self.tokens is None or not secret:
            return None
        token = self.tokens.authenticate(b"Bearer " + secret.encode("utf-8", "replace"))
        return token if token is not None and allows(token.role, "read") else None

    def viewer(self, scope: Scope) -> Viewer | None:
        if self.public:
            return PUBLIC
        if self.tokens is None:
            return None
        headers = scope.get("headers", ())
        header = authorization_header(headers)
        if header is not None:
            token = self.tokens.authenticate(header)
            return Viewer(token.name, token.role) if token is not None and allows(token.role, "read") else None
        token = self.check_secret(session_cookie(headers) or "")
        return Viewer(token.name, token.role) if token is not None else None


def session_cookie(headers) -> str | None:
    values = [value for key, value in headers if key == b"cookie"]
    if len(values) != 1:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(values[0].decode("latin-1"))
    except CookieError:
        return None
    morsel = cookie.get(COOKIE_NAME)
    return morsel.value if morsel is not None else None


def set_session(response: Response, secret: str, secure: bool) -> None:
    response.set_cookie(COOKIE_NAME, secret, max_age=SESSION_S, path=COOKIE_PATH, secure=secure, httponly=True,
                        samesite="strict")


def clear_session(response: Response, secure: bool) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict")


def viewer_of(request: Request) -> Viewer:
    """The viewer a UiGuard let through."""
    return request.scope[VIEWER_SCOPE_KEY]


Refusal = Callable[[Request], Awaitable[Response]]


class UiGuard:
    """Run `app` only for a viewer `access` accepts; otherwise answer with `refuse` (a 401)."""

    def __init__(self, app: ASGIApp, access: UiAccess, refuse: Refusal) -> None:
        self.app = app
        self.access = access
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        viewer = self.access.viewer(scope)
        if viewer is None:
            response = await self.refuse(Request(scope, receive))
            await response(scope, receive, send)
            return
        scope[VIEWER_SCOPE_KEY] = viewer
        await self.app(scope, receive, send)
