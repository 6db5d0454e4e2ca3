"""gRPC only: the Open Inference Protocol's GRPCInferenceService (KServe v2) over grpc.aio, beside HTTP in the same
event loop and on the same Service (gateway/endpoints.py is the HTTP side). Needs onnxgate[grpc].

Metadata plays the part of HTTP's headers: `x-environment` picks the environment, and the routing header the operator
trusts (settings.routing_header, lowercased, as gRPC metadata keys always are) carries the routing key. Errors become
gRPC status codes through GRPC_CODES, one table over the statuses gateway.errors gives them.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gateway import v2
from gateway.endpoints import ENVIRONMENT_HEADER, server_version
from gateway.errors import InvalidInput, error_answer
from gateway.grpc_infer import GrpcInferRequest, heavy_to_decode, infer_response
from gateway.health import readiness
from gateway.service import Service
from gateway.settings import GatewaySettings

log = logging.getLogger("onnxgate.gateway")

StatusCode = grpc.StatusCode

# HTTP status (gateway.errors.status_for) -> gRPC status code; anything else is INTERNAL
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: StatusCode.INVALID_ARGUMENT,
    403: StatusCode.PERMISSION_DENIED,  # a pin of a version this gateway may not serve
    404: StatusCode.NOT_FOUND,
    413: StatusCode.RESOURCE_EXHAUSTED,  # more rows than max_batch_rows
    415: StatusCode.INVALID_ARGUMENT,
    503: StatusCode.UNAVAILABLE,
}
STOP_GRACE_S = 5.0


def grpc_error(error: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    status, message = error_answer(error, "gRPC", method)
    return GRPC_CODES.get(status, StatusCode.INTERNAL), message


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def answering_errors(handler: Handler) -> Handler:
    """The RPC's failures as their status code and message (the server's own faults logged, never shown)."""

    @functools.wraps(handler)
    async def rpc(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure gets its status; unexpected ones are logged
            code, message = grpc_error(exc, handler.__name__)
        await context.abort(code, message)

    return rpc


class CallMetadata:
    """What an RPC's metadata says: the environment, the trusted routing key, and who sent it (the routing key when
    there is one, else the peer's address), as gateway.data_plane reads them from HTTP headers."""

    __slots__ = ("environment", "routing_key", "source")

    def __init__(self, context: grpc.aio.ServicerContext, routing_header: str | None, max_routing_key_bytes: int) -> None:
        environment = routing_key = None
        for key, value in context.invocation_metadata() or ():
            if key == ENVIRONMENT_HEADER:
                environment = value
            elif key == routing_header:
                if routing_key is not None:
                    raise InvalidInput(f"metadata {routing_header} was sent more than once")
                if len(value) > max_routing_key_bytes:
                    raise InvalidInput(f"metadata {routing_header} is {len(value)} bytes, over the limit of "
                                       f"{max_routing_key_bytes}")
                routing_key = value
        self.environment = environment
        self.routing_key = routing_key or None
        self.source = self.routing_key or peer_address(context.peer())


def peer_address(peer: str | None) -> str | None:
    """`ipv4:127.0.0.1:5000` -> `127.0.0.1`, `ipv6:[::1]:5000` -> `::1` (the address without its port, as HTTP's)."""
    if not peer:
        return None
    address = peer.split(":", 1)[-1]
    host, _, _ = address.rpartition(":")
    return host.strip("[]") or address


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer; the protocol's other RPCs
    (streaming, repository, shared memory, statistics) answer UNIMPLEMENTED."""

    def __init__(self, service: Service) -> None:
        self.service = service
        settings = service.settings
        self.routing_header = settings.routing_header
        self.max_routing_key_bytes = settings.max_routing_key_bytes
        self.inline_decode_max_bytes = settings.inline_decode_max_bytes
        self.mirrors: set[asyncio.Task] = set()

    def metadata(self, context: grpc.aio.ServicerContext) -> CallMetadata:
        return CallMetadata(context, self.routing_header, self.max_routing_key_bytes)

    @answering_errors
    async def ServerLive(self, request: service_pb2.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    @answering_errors
    async def ServerReady(self, request: service_pb2.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> service_pb2.ServerReadyResponse:
        ready, _ = readiness(self.service.pools, self.service.environments)
        return service_pb2.ServerReadyResponse(ready=ready)

    @answering_errors
    async def ServerMetadata(self, request: service_pb2.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> service_pb2.ServerMetadataResponse:
        return service_pb2.ServerMetadataResponse(name="onnxgate", version=server_version(), extensions=[])

    @answering_errors
    async def ModelReady(self, request: service_pb2.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> service_pb2.ModelReadyResponse:
        environment = self.service.environment(self.metadata(context).environment)
        ready = self.service.is_ready(request.name, environment, request.version or None)
        return service_pb2.ModelReadyResponse(ready=ready)

    @answering_errors
    async def ModelMetadata(self, request: service_pb2.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> service_pb2.ModelMetadataResponse:
        environment = self.service.environment(self.metadata(context).environment)
        loaded, versions = await self.service.described(request.name, environment, request.version or None)
        described = v2.model_metadata(request.name, versions, loaded)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=described["name"], versions=described["versions"], platform=described["platform"],
            inputs=[tensor(**spec) for spec in described["inputs"]],
            outputs=[tensor(**spec) for spec in described["outputs"]])

    @answering_errors
    async def ModelInfer(self, request: service_pb2.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> service_pb2.ModelInferResponse:
        metadata = self.metadata(context)
        infer = GrpcInferRequest(request, heavy_to_decode(request, self.inline_decode_max_bytes))
        answer = await self.service.answer(request.model_name, metadata.environment, request.model_version or None,
                                           metadata.routing_key, infer, source=metadata.source)
        response = infer_response(answer)
        if answer.mirror is not None:  # the shadow's run, once the answer is on its way
            mirror = asyncio.create_task(answer.mirror())
            self.mirrors.add(mirror)
            mirror.add_done_callback(self.mirrors.discard)
        return response

    async def stop(self) -> None:
        for mirror in list(self.mirrors):
            mirror.cancel()
        await asyncio.gather(*self.mirrors, return_exceptions=True)


def unimplemented(name: str) -> Handler:
    async def rpc(self: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(StatusCode.UNIMPLEMENTED, f"{name} is not served by onnxgate")

    rpc.__name__ = name
    return rpc


# The protocol's RPCs onnxgate does not serve: a clean UNIMPLEMENTED rather than the generated base class's
for _name in ("ModelStreamInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
              "RepositoryModelUnload", "SystemSharedMemoryStatus", "SystemSharedMemoryRegister",
              "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus", "CudaSharedMemoryRegister",
              "CudaSharedMemoryUnregister", "TraceSetting", "LogSettings"):
    setattr(InferenceServicer, _name, unimplemented(_name))


class GrpcServer:
    """The gRPC server of one worker: started and stopped by the app's lifespan (gateway/app.py)."""

    def __init__(self, server: grpc.aio.Server, servicer: InferenceServicer, port: int) -> None:
        self.server = server
        self.servicer = servicer
        self.port = port

    @classmethod
    async def start(cls, service: Service, settings: GatewaySettings) -> GrpcServer:
        """Listen on settings.host:settings.grpc_port. Messages over max_body_bytes are refused by grpc itself
        (RESOURCE_EXHAUSTED), in-flight RPCs over max_connections too. With several workers each binds the same port
        with SO_REUSEPORT and the kernel spreads connections over them; with one, the port must be free."""
        options = [("grpc.max_receive_message_length", settings.max_body_bytes),
                   ("grpc.so_reuseport", 1 if settings.workers > 1 else 0)]
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=settings.max_connections)
        servicer = InferenceServicer(service)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        try:
            port = server.add_insecure_port(f"{host}:{settings.grpc_port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {host}:{settings.grpc_port}: {exc}") from None
        await server.start()
        log.info("gRPC inference service on %s:%d", host, port)
        return cls(server, servicer, port)

    async def stop(self) -> None:
        """Refuse new RPCs, let those under way finish for up to STOP_GRACE_S, then drop pending shadow runs."""
        await self.server.stop(STOP_GRACE_S)
        await self.servicer.stop()
