"""The ops API on its own port (`--admin-port`): a second uvicorn server in the gateway's process and event loop,
started and stopped by the application's lifespan as the gRPC server is, serving an application that holds only the
admin routes. With several workers each binds the same port with SO_REUSEPORT and the kernel spreads connections over
them; with one, the port must be free."""
from __future__ import annotations

import logging
import socket

import uvicorn
from starlette.applications import Starlette

from gateway.server import uvicorn_options
from gateway.settings import GatewaySettings

log = logging.getLogger("onnxgate.gateway")
SHUTDOWN_S = 10.0
"""Requests still running on the ops API's port this long after shutdown begins are cancelled (as `onnxgate serve`
does for the gateway's own port)."""


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, reuse_port=reuse_port)
    except OSError as exc:
        raise OSError(f"cannot listen for the ops API on {host}:{port}: {exc.strerror or exc}") from None


class AdminServer:
    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.socket = sock
        self.port: int = sock.getsockname()[1]

    @classmethod
    async def start(cls, app: Starlette, settings: GatewaySettings) -> AdminServer:
        host = settings.admin_host or settings.host
        assert settings.admin_port is not None
        # log_config and log_level None: the gateway's server configured logging already, and a second dictConfig
        # would silence its own messages
        config = uvicorn.Config(app, host=host, port=settings.admin_port, lifespan="off", log_config=None,
                                log_level=None, access_log=settings.access_log, timeout_graceful_shutdown=SHUTDOWN_S,
                                **uvicorn_options(settings))
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # lifespan "off": the gateway's own lifespan runs this one
        sock = listening_socket(host, settings.admin_port, reuse_port=settings.workers > 1)
        await server.startup(sockets=[sock])
        admin = cls(server, sock)
        log.info("ops API on http://%s:%d/admin/v1/", host, admin.port)
        return admin

    async def stop(self) -> None:
        await self.server.shutdown(sockets=[self.socket])
