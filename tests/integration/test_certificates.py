"""Node certificates over their lifetime: checked at start, renewed in place and reloaded,
and handshake failures reported as what they are."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import socket
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nodes.cli import main
from nodes.common import pki
from nodes.common.channels import Channels
from nodes.common.config import ConfigError, NodeConfig, TlsConfig
from nodes.common.errors import DomainError
from nodes.common.node import Node
from nodes.common.status import RemoteError, remote_to_domain
from nodes.retail.peers import RetailPeers
from nodes.settlement.peers import SettlementPeers
from tests.support import Pki, node_config, running


def served_certificate(address: str, ca: Pki) -> x509.Certificate:
    """The certificate a node presents on a fresh TLS handshake (read with Python's ssl)."""
    admin = ca.issue("admin", "operator")
    context = ssl.create_default_context(cafile=str(ca.ca))
    context.check_hostname = False
    context.load_cert_chain(str(admin.cert), str(admin.key))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw) as tls_socket:
            der = tls_socket.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_certificate_without_the_nodes_ip_is_refused_at_start(ca: Pki, tmp_path: Path):
    config = node_config(tmp_path, ca, "approval", "institution")
    wrong = ca.issue("approval", "institution", ip="10.9.9.9")
    config = dataclasses.replace(config, tls=wrong)

    async def start() -> None:
        node = Node(config)
        try:
            await node.start()
        finally:
            await node.stop()

    with pytest.raises(ConfigError) as refused:
        asyncio.run(start())
    message = str(refused.value)
    assert "IP SAN (10.9.9.9) does not include 127.0.0.1" in message
    assert "suretynet pki issue --role approval --entity institution --ip 127.0.0.1" in message


def test_an_expired_certificate_is_refused_at_start_with_what_to_do(ca: Pki, tmp_path: Path):
    now = datetime.datetime.now(datetime.UTC)
    expired = pki.issue_certificate(
        ca.directory,
        role="approval",
        entity_id="institution",
        ip_addresses=["127.0.0.1"],
        out_directory=tmp_path / "expired",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    config = node_config(tmp_path, ca, "approval", "institution")
    config = dataclasses.replace(config, tls=TlsConfig(ca.ca, expired.cert_path, expired.key_path))

    async def start() -> None:
        node = Node(config)
        try:
            await node.start()
        finally:
            await node.stop()

    with pytest.raises(ConfigError, match="suretynet pki renew"):
        asyncio.run(start())


def test_a_renewed_certificate_is_served_on_the_next_handshake_without_a_restart(
    ca: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    issued = pki.issue_certificate(
        ca.directory,
        role="approval",
        entity_id="renewing",
        ip_addresses=["127.0.0.1"],
        out_directory=tmp_path / "pki",
    )
    config = node_config(tmp_path, ca, "approval", "renewing")
    config = dataclasses.replace(config, tls=TlsConfig(ca.ca, issued.cert_path, issued.key_path))

    async def scenario() -> tuple[int, int, int]:
        async with running(config) as node:
            before = served_certificate(node.runtime.address, ca).serial_number
            code = main(
                ["pki", "renew", "--dir", str(ca.directory), "--cert", str(issued.cert_path)]
            )
            assert code == 0
            after = served_certificate(node.runtime.address, ca).serial_number
            async with ca.channel(node.runtime.address) as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            return before, after, health.status

    before, after, status = asyncio.run(scenario())
    renewed = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert before != after == renewed.serial_number
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "no restart" in capsys.readouterr().out


def _renewing_shop(ca: Pki, tmp_path: Path) -> tuple[pki.IssuedCertificate, NodeConfig]:
    """A shop's certificate of its own, to renew, and a config that uses it (approval at
    127.0.0.1:1, verification at 127.0.0.1:2: never dialled)."""
    issued = pki.issue_certificate(
        ca.directory,
        role="retail",
        entity_id="renewing-shop",
        ip_addresses=["127.0.0.1"],
        out_directory=tmp_path / "pki",
    )
    config = node_config(
        tmp_path, ca, "retail", "renewing-shop", approval_address="127.0.0.1:1", program_serial="S"
    )
    return issued, dataclasses.replace(
        config,
        verification_address="127.0.0.1:2",
        tls=TlsConfig(ca.ca, issued.cert_path, issued.key_path),
    )


def test_outgoing_channels_use_the_renewed_certificate(ca: Pki, tmp_path: Path):
    issued, config = _renewing_shop(ca, tmp_path)

    async def scenario() -> bool:
        channels = Channels(config)
        first = channels.channel("127.0.0.1:1")
        same = channels.channel("127.0.0.1:1")
        pki.renew_certificate(ca.directory, issued.cert_path)
        renewed = channels.channel("127.0.0.1:1")
        await channels.close()
        return first is same and renewed is not first

    assert asyncio.run(scenario())


def test_peers_call_over_the_renewed_certificates_channel(ca: Pki, tmp_path: Path):
    """A shop's and an agency's calls to approval and verification go over the channel made
    with the renewed certificate, not over one their peers kept from start-up (which would
    go on presenting the old certificate until it expired)."""
    issued, config = _renewing_shop(ca, tmp_path)

    async def scenario() -> None:
        channels = Channels(config)
        runtime = SimpleNamespace(config=config, channels=channels)
        shop, agency = RetailPeers(runtime), SettlementPeers(runtime)

        def stubs() -> tuple[Any, ...]:
            return (shop._directory, shop._transactions, agency._directory, agency._verification())

        before = stubs()
        assert stubs() == before, "one stub per channel, not one per call"
        pki.renew_certificate(ca.directory, issued.cert_path)
        after = stubs()
        await channels.close()
        assert all(new is not old for new, old in zip(after, before, strict=True))

    asyncio.run(scenario())


def test_a_peer_certificate_that_does_not_name_the_address_is_unauthenticated_not_unavailable(
    ca: Pki, tmp_path: Path
):
    """Dialled as "localhost", a certificate with only IP SANs fails the handshake: the
    caller gets UNAUTHENTICATED / PEER_CERTIFICATE_REJECTED at once, not retries."""
    shop = node_config(
        tmp_path, ca, "retail", "shop-x", approval_address="127.0.0.1:1", program_serial="S"
    )

    async def scenario() -> DomainError:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
            port = approval.runtime.address.rsplit(":", 1)[1]
            channels = Channels(shop)
            stub = health_pb2_grpc.HealthStub(channels.channel(f"localhost:{port}"))
            try:
                await channels.call(
                    stub.Check, health_pb2.HealthCheckRequest(), peer="approval", idempotent=True
                )
            except DomainError as error:
                return error
            finally:
                await channels.close()
        raise AssertionError("the handshake succeeded")

    error = asyncio.run(scenario())
    assert (error.kind.value, error.reason) == (
        "UNAUTHENTICATED",
        "PEER_CERTIFICATE_REJECTED",
    ), error.message


def test_a_peers_key_refusal_reaches_our_caller_with_its_reason():
    remote = RemoteError(grpc.StatusCode.UNAUTHENTICATED, "revoked: audit", "LICENSE_KEY_REVOKED")
    error = remote_to_domain(remote, peer="approval")
    assert (error.kind.value, error.reason) == ("UNAUTHENTICATED", "LICENSE_KEY_REVOKED")
