"""The gRPC server every node runs: ports, TLS, limits, reflection, health, shutdown.

``create_server`` only assembles; ``NodeServer.start`` binds and serves, so tests can bind
port 0 and read the port back. Node-to-node calls land on the node port (mutual TLS
required); members land on the optional member port (server TLS only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.common import tls
from nodes.common.config import ConfigError, NodeConfig
from nodes.common.interceptor import NodeInterceptor
from nodes.common.reflection import enable_documented_reflection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """One gRPC service a node serves: its full name, the servicer, and its add function."""

    name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.aio.Server], None]


def server_options(config: NodeConfig) -> list[tuple[str, Any]]:
    limit = config.limits.max_message_bytes
    return [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ]


class _GenericHandlersOnly:
    """The server as the generated ``add_*_to_server`` functions see it: their handlers
    are added as generic handlers only, not also as "registered methods".

    grpc.aio's server waits for its next call with one pending future per registered
    method (``asyncio.wait(..., FIRST_COMPLETED)`` over all of them), on every call: with
    the 40-odd methods of a node that is 30-60 µs of CPU per RPC before any of its work
    (docs/PERFORMANCE.md). Generic handlers are found by a dictionary lookup per service.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Left out: each generated function adds the same handlers as a generic one."""


class NodeServer:
    """A started-or-not grpc.aio server with its health service and bound ports."""

    def __init__(
        self, config: NodeConfig, services: Sequence[Service], interceptor: NodeInterceptor
    ) -> None:
        self.config = config
        self.interceptor = interceptor
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._services = list(services)
        self._server = grpc.aio.server(
            interceptors=[interceptor],
            options=server_options(config),
            maximum_concurrent_rpcs=config.limits.max_concurrent_rpcs,
        )
        # What the generated functions call on a server, and nothing else, is there.
        handlers = cast(grpc.aio.Server, _GenericHandlersOnly(self._server))
        for service in self._services:
            service.add_to_server(service.servicer, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, handlers)
        names = [service.name for service in self._services]
        enable_documented_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], handlers
        )
        self.port = 0
        self.member_port = 0

    def bind(self) -> None:
        """Binds the node port (and member port); a port that cannot be bound is a ConfigError."""
        config = self.config
        self.port = self._add_port(config.listen_address, "listen_address", member=False)
        if config.member_listen_address:
            self.member_port = self._add_port(
                config.member_listen_address, "member_listen_address", member=True
            )

    def _add_port(self, address: str, key: str, *, member: bool) -> int:
        config = self.config
        try:
            if config.insecure_dev:
                port = self._server.add_insecure_port(address)
            else:
                assert config.tls is not None
                credentials = (
                    tls.member_server_credentials(config.tls)
                    if member
                    else tls.node_server_credentials(config.tls)
                )
                port = self._server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise ConfigError(
                f"config.{key}: cannot listen on {address}: the port is in use, or the "
                "address is not one of this host's"
            ) from error
        if not port:
            raise ConfigError(f"config.{key}: cannot listen on {address}")
        return int(port)

    async def start(self) -> None:
        await self._server.start()

    async def set_serving(self, serving: bool = True) -> None:
        """Marks the node and each of its services SERVING (or NOT_SERVING) on health."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *(service.name for service in self._services)]:
            await self.health.set(name, status)

    async def set_not_serving(self) -> None:
        """Marks the node and each of its services NOT_SERVING (it cannot do its work)."""
        for name in ["", *(service.name for service in self._services)]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float | None = None) -> None:
        """Reports NOT_SERVING, then lets in-flight RPCs finish for ``grace_s`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self.config.limits.shutdown_grace_s if grace_s is None else grace_s)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


def address_with_port(address: str, port: int) -> str:
    """Replaces the port of ``host:port`` (``[v6]:port``) with the port actually bound."""
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
