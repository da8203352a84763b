"""A role run as several replicas: one channel spreads calls over every replica that is up
and SERVING (round_robin with client-side health checks), and the TLS server-name check
still holds for each replica."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodes.common import pki, tls
from nodes.common.channels import Channels
from nodes.common.config import ConfigError, TlsConfig
from tests.support import Pki, eventually, node_config


def free_port(ip: str) -> int:
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return int(probe.getsockname()[1])


class CountingHealth(health.aio.HealthServicer):  # type: ignore[name-defined]
    """The standard health service, counting the Check calls it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0

    async def Check(self, request: object, context: object) -> object:
        self.checks += 1
        return await super().Check(request, context)


async def serve(tls_config: TlsConfig, address: str) -> tuple[grpc.aio.Server, CountingHealth]:
    server = grpc.aio.server()
    servicer = CountingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_secure_port(address, tls.node_server_credentials(tls_config))
    await server.start()
    return server, servicer


def replica_certificate(ca: Pki, ips: list[str], name: str) -> TlsConfig:
    """The entity's certificate as a replica presents it: IP SANs for ``ips``."""
    out = ca.directory / name
    issued = pki.issue_certificate(
        ca.directory,
        role="verification",
        entity_id="verification",
        ip_addresses=ips,
        out_directory=out,
    )
    return TlsConfig(ca.ca, issued.cert_path, issued.key_path)


async def check(channels: Channels, address: str) -> int:
    stub = health_pb2_grpc.HealthStub(channels.channel(address))
    response = await channels.call(
        stub.Check, health_pb2.HealthCheckRequest(), peer="verification", idempotent=True
    )
    return int(response.status)


def test_calls_spread_over_replicas_and_skip_a_dead_or_unhealthy_one(ca: Pki, tmp_path: Path):
    """Both replicas answer; one stopped, the other takes every call; one NOT_SERVING (its
    database down, say) gets no calls although its port still answers."""

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        cert = replica_certificate(ca, ["127.0.0.1", "127.0.0.2"], "both")
        first = f"127.0.0.1:{free_port('127.0.0.1')}"
        second = f"127.0.0.2:{free_port('127.0.0.2')}"
        (server_one, one), (server_two, two) = await serve(cert, first), await serve(cert, second)
        channels = Channels(node_config(tmp_path, ca, "approval", "institution"))
        both = f"{first},{second}"
        try:
            for _ in range(20):
                assert await check(channels, both) == health_pb2.HealthCheckResponse.SERVING
            spread = [one.checks, two.checks]
            # The second replica reports NOT_SERVING: client-side health checks drop it.
            await two.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

            async def only_first() -> bool:
                before = two.checks
                for _ in range(5):
                    await check(channels, both)
                return two.checks == before

            await eventually(only_first)
            two.checks = 0
            for _ in range(10):
                await check(channels, both)
            unhealthy = [one.checks, two.checks]
            await two.set("", health_pb2.HealthCheckResponse.SERVING)
            await server_one.stop(None)
            one.checks, two.checks = 0, 0
            for _ in range(10):
                assert await check(channels, both) == health_pb2.HealthCheckResponse.SERVING
            dead = [one.checks, two.checks]
        finally:
            await channels.close()
            await server_one.stop(None)
            await server_two.stop(None)
        return spread, unhealthy, dead

    spread, unhealthy, dead = asyncio.run(scenario())
    assert spread[0] > 0 and spread[1] > 0 and sum(spread) == 20
    assert unhealthy[1] == 0
    assert dead == [0, 10]


def test_a_replica_whose_certificate_does_not_name_the_checked_ip_gets_no_calls(
    ca: Pki, tmp_path: Path
):
    """The server-name check holds for every replica: one presenting a certificate without
    the entity's checked IP (the first replica's) fails its handshake and is never used."""

    async def scenario() -> tuple[int, int]:
        good = replica_certificate(ca, ["127.0.0.1", "127.0.0.2"], "good")
        wrong = replica_certificate(ca, ["127.0.0.2"], "wrong")
        first = f"127.0.0.1:{free_port('127.0.0.1')}"
        second = f"127.0.0.2:{free_port('127.0.0.2')}"
        (server_one, one), (server_two, two) = await serve(good, first), await serve(wrong, second)
        channels = Channels(node_config(tmp_path, ca, "approval", "institution"))
        try:
            for _ in range(10):
                await check(channels, f"{first},{second}")
        finally:
            await channels.close()
            await server_one.stop(None)
            await server_two.stop(None)
        return one.checks, two.checks

    answered_good, answered_wrong = asyncio.run(scenario())
    assert (answered_good, answered_wrong) == (10, 0)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("approval.example:7443,10.0.0.2:7443", "replicas are listed by IP"),
        ("10.0.0.1:7443,10.0.0.2", "is not HOST:PORT"),
    ],
)
def test_replica_lists_in_a_config_are_ips_with_ports(
    ca: Pki, tmp_path: Path, address: str, message: str
):
    with pytest.raises(ConfigError, match=message):
        node_config(tmp_path, ca, "verification", "verification", approval_address=address)
