"""Bearer authentication and roles for the ops API.

Every admin route is wrapped in a `Guard` (a plain ASGI app) that authenticates the request and checks the route's
permission before the endpoint runs, so a route cannot be reached unauthenticated however the request arrives (the
data plane's match, which skips Starlette's middleware, only ever takes its own POSTs; the guard does not depend on
middleware at all). The secret's SHA-256 is compared with every token's in constant time (hmac.compare_digest over
digests, no early exit), so neither timing nor the file reveals a secret.

401 without a token or with a wrong one (with `WWW-Authenticate: Bearer`), 403 when the token's role does not allow
the route.
"""
from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admin.tokens import TokenEntry, secret_digest
from gateway.errors import Forbidden, Unauthorized, admin_error_response

Permission = Literal["read", "deploy", "approve"]
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "deploy": frozenset({"read", "deploy"}),
    "approve": frozenset({"read", "approve"}),
    "admin": frozenset({"read", "deploy", "approve"}),
}
TOKEN_SCOPE_KEY = "onnxgate.admin_token"
REALM = "onnxgate-admin"


@dataclass(frozen=True)
class TokenTable:
    """The configured tokens, as digests to compare against."""

    tokens: tuple[TokenEntry, ...]

    def authenticate(self, authorization: bytes | None) -> TokenEntry | None:
        """The token whose secret the `Authorization: Bearer <secret>` header carries, else None."""
        if not authorization:
            return None
        scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return None
        digest = secret_digest(credentials)
        found = None
        for token in self.tokens:  # every token compared: the time taken does not say which (if any) matched
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def allows(role: str, permission: str) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def authorization_header(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    values = [value for key, value in headers if key == b"authorization"]
    return values[0] if len(values) == 1 else None  # two Authorization headers: neither is trusted


def token_of(scope: Scope) -> TokenEntry:
    """The token a Guard let through (endpoints only run behind one)."""
    return scope[TOKEN_SCOPE_KEY]


class Guard:
    """An admin route's app: authenticate, check `permission`, then run `app` with the token in the scope."""

    def __init__(self, app: ASGIApp, permission: Permission, tokens: TokenTable) -> None:
        self.app = app
        self.permission = permission
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = authorization_header(scope.get("headers", ()))
        token = self.tokens.authenticate(header)
        if token is None:
            message = "a valid bearer token is required" if header is None else "invalid bearer token"
            response = admin_error_response(Unauthorized(message), scope["method"], scope["path"])
            response.headers["www-authenticate"] = f'Bearer realm="{REALM}"' + (
                ', error="invalid_token"' if header else "")
            await response(scope, receive, send)
            return
        if not allows(token.role, self.permission):
            refusal = Forbidden(f"token {token.name!r} (role {token.role}) may not {self.permission}: this needs the "
                                f"{self.permission} or admin role")
            await admin_error_response(refusal, scope["method"], scope["path"])(scope, receive, send)
            return
        scope[TOKEN_SCOPE_KEY] = token
        await self.app(scope, receive, send)
