"""One POST to a subscriber, with urllib (the serving install has no HTTP client), and what its answer means:
delivered (2xx), refused (a 4xx other than 408/429: the same body would be refused again) or to retry (anything else:
5xx, 408, 429, a redirect, a timeout, a connection refused)."""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["delivered", "refused", "retry"]
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: a redirect is reported, never followed with the signed body."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    status: int | None
    error: str | None = None


def classify(status: int) -> Verdict:
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS:
        return "refused"
    return "retry"


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:  # TimeoutError among them
        reason = getattr(exc, "reason", exc)
        return Attempt("retry", None, f"{type(reason).__name__}: {reason}")
    verdict = classify(status)
    return Attempt(verdict, status, None if verdict == "delivered" else f"HTTP {status}")
