"""A pure ASGI middleware that refuses request bodies over a size limit: early from Content-Length, and by counting
streamed bytes for chunked bodies or lying headers."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge, error_body


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await _refuse(send, f"request body of {value.decode('latin-1')} bytes is over the limit of "
                                        f"{limit} bytes")
                    return
                # the server holds the body to its Content-Length (h11 framing), so there is nothing to count
                await self.app(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = error_body(message)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
