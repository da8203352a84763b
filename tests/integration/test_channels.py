"""Outgoing calls: a peer back from an outage is used; a peer that stays down is reported."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.common import tls
from nodes.common.channels import Channels
from nodes.common.errors import DomainError
from tests.support import Pki, node_config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve_health(ca: Pki, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
    server.add_secure_port(
        f"127.0.0.1:{port}", tls.node_server_credentials(ca.issue("verification", "peer"))
    )
    await server.start()
    return server


def test_an_idempotent_call_rides_through_a_peer_coming_back(ca: Pki, tmp_path: Path):
    """The peer is down when the call starts and comes up once the first attempt failed."""

    async def scenario() -> int:
        port = free_port()
        channels = Channels(node_config(tmp_path, ca, "approval", "institution"))
        channel = channels.channel(f"127.0.0.1:{port}")
        stub = health_pb2_grpc.HealthStub(channel)
        call = asyncio.ensure_future(
            channels.call(stub.Check, health_pb2.HealthCheckRequest(), peer="peer", idempotent=True)
        )
        # Wait for the condition, not a time: the channel has failed to connect once.
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            await asyncio.wait_for(channel.wait_for_state_change(state), timeout=10)
            state = channel.get_state()
        server = await serve_health(ca, port)
        try:
            response = await call
        finally:
            await server.stop(None)
            await channels.close()
        return response.status

    assert asyncio.run(scenario()) == health_pb2.HealthCheckResponse.SERVING


def test_a_peer_that_stays_down_is_reported_after_bounded_retries(ca: Pki, tmp_path: Path):
    async def scenario() -> None:
        channels = Channels(node_config(tmp_path, ca, "approval", "institution"))
        stub = health_pb2_grpc.HealthStub(channels.channel(f"127.0.0.1:{free_port()}"))
        try:
            with pytest.raises(DomainError) as refused:
                await channels.call(
                    stub.Check, health_pb2.HealthCheckRequest(), peer="peer", idempotent=True
                )
        finally:
            await channels.close()
        assert refused.value.reason == "PEER_UNAVAILABLE"
        assert refused.value.kind.value == "UNAVAILABLE", "not the caller's deadline running out"
        assert refused.value.metadata["peer"] == "peer"

    asyncio.run(scenario())


def test_a_peers_own_unavailable_answer_is_not_retried_again(ca: Pki, tmp_path: Path):
    """The peer says the node behind it is down (PEER_UNAVAILABLE): it already retried that
    hop, so this hop does not multiply the attempts."""
    from nodes.common.errors import ErrorKind
    from nodes.common.status import to_status

    received: list[int] = []

    class Overloaded(health.aio.HealthServicer):  # type: ignore[name-defined]
        async def Check(self, request, context):
            received.append(1)
            status = to_status(DomainError(ErrorKind.UNAVAILABLE, "PEER_UNAVAILABLE", "behind"))
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def scenario() -> DomainError:
        port = free_port()
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(Overloaded(), server)
        server.add_secure_port(
            f"127.0.0.1:{port}", tls.node_server_credentials(ca.issue("verification", "peer"))
        )
        await server.start()
        channels = Channels(node_config(tmp_path, ca, "approval", "institution"))
        stub = health_pb2_grpc.HealthStub(channels.channel(f"127.0.0.1:{port}"))
        try:
            with pytest.raises(DomainError) as refused:
                await channels.call(
                    stub.Check, health_pb2.HealthCheckRequest(), peer="peer", idempotent=True
                )
            return refused.value
        finally:
            await channels.close()
            await server.stop(None)

    refused = asyncio.run(scenario())
    assert refused.reason == "PEER_UNAVAILABLE"
    assert received == [1]
