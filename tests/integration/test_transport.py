"""The node runtime on a real socket: mutual TLS, health, reflection, limits, errors."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

from nodes.approval import enrollment
from nodes.common import logs, pki, tls
from tests.support import Pki, grpcurl_binary, node_config, refusal, running


def test_health_reports_serving_once_started(ca: Pki, tmp_path: Path):
    async def scenario() -> int:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            async with ca.channel(node.runtime.address) as channel:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                service = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(
                        service="suretynet.approval.v1.EnrollmentService"
                    ),
                    timeout=5,
                )
                assert service.status == health_pb2.HealthCheckResponse.SERVING
                return response.status

    assert asyncio.run(scenario()) == health_pb2.HealthCheckResponse.SERVING


def test_the_server_waits_for_each_call_on_one_future_not_one_per_method(
    ca: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """grpc.aio's server waits for its next call over one pending future per registered
    method, on every call; the node adds its handlers as generic ones only, so it waits on
    one (docs/PERFORMANCE.md). Its methods are all still served, reflection included."""
    waited_on: list[int] = []
    original_wait = asyncio.wait

    async def counting_wait(futures: Any, *args: Any, **kwargs: Any) -> Any:
        waited_on.append(len(futures))
        return await original_wait(futures, *args, **kwargs)

    monkeypatch.setattr(asyncio, "wait", counting_wait)

    async def scenario() -> None:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            async with ca.channel(node.runtime.address) as channel:
                waited_on.clear()
                for _ in range(3):
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    )
                await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                    approval_pb2.ListEntitiesRequest(), timeout=5
                )

    asyncio.run(scenario())
    assert waited_on, "the server waited for its calls"
    assert max(waited_on) == 1


def test_a_client_without_a_certificate_is_refused_at_the_handshake(ca: Pki, tmp_path: Path):
    """Server-authenticated TLS is not enough on the node port: mutual TLS is required."""

    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            credentials = tls.client_credentials(ca.ca.read_bytes())
            async with grpc.aio.secure_channel(node.runtime.address, credentials) as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                        approval_pb2.ListEntitiesRequest(), timeout=5
                    )
                )

    assert asyncio.run(scenario()).code == grpc.StatusCode.UNAVAILABLE


def test_a_client_certificate_from_another_ca_is_refused(ca: Pki, tmp_path: Path):
    other = tmp_path / "other-ca"
    pki.init_ca(other)
    issued = pki.issue_certificate(
        other, role="admin", entity_id="operator", ip_addresses=["127.0.0.1"], out_directory=other
    )

    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            credentials = tls.client_credentials(
                ca.ca.read_bytes(), issued.cert_path.read_bytes(), issued.key_path.read_bytes()
            )
            async with grpc.aio.secure_channel(node.runtime.address, credentials) as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                        approval_pb2.ListEntitiesRequest(), timeout=5
                    )
                )

    assert asyncio.run(scenario()).code == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused_by_a_tls_node(ca: Pki, tmp_path: Path):
    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            async with grpc.aio.insecure_channel(node.runtime.address) as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                        approval_pb2.ListEntitiesRequest(), timeout=5
                    )
                )

    assert asyncio.run(scenario()).code == grpc.StatusCode.UNAVAILABLE


def test_insecure_dev_mode_serves_plaintext_only_when_asked(ca: Pki, tmp_path: Path):
    """--insecure-dev: plaintext, identity from x-suretynet-dev-identity metadata."""

    async def scenario() -> tuple[int, str]:
        config = node_config(tmp_path, ca, "approval", "institution", insecure_dev=True)
        async with running(config) as node:
            async with grpc.aio.insecure_channel(node.runtime.address) as channel:
                stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                listed = await stub.ListEntities(
                    approval_pb2.ListEntitiesRequest(),
                    timeout=5,
                    metadata=[("x-suretynet-dev-identity", "suretynet://admin/operator")],
                )
                anonymous = await refusal(
                    stub.ListEntities(approval_pb2.ListEntitiesRequest(), timeout=5)
                )
        return len(listed.entities), anonymous.reason

    assert asyncio.run(scenario()) == (0, "CLIENT_CERTIFICATE_REQUIRED")


def test_grpcurl_lists_and_describes_through_reflection_over_mutual_tls(ca: Pki, tmp_path: Path):
    """The real grpcurl binary, the admin certificate, a node on port 0."""
    admin = ca.issue("admin", "operator")

    async def scenario() -> tuple[str, str]:
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            base = [
                grpcurl_binary(),
                "-cacert",
                str(admin.ca),
                "-cert",
                str(admin.cert),
                "-key",
                str(admin.key),
                node.runtime.address,
            ]
            listed = await asyncio.to_thread(
                subprocess.run, [*base, "list"], capture_output=True, text=True, timeout=30
            )
            described = await asyncio.to_thread(
                subprocess.run,
                [*base, "describe", "suretynet.approval.v1.EnrollmentService"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert listed.returncode == 0, listed.stderr
            assert described.returncode == 0, described.stderr
            return listed.stdout, described.stdout

    listed, described = asyncio.run(scenario())
    assert "suretynet.approval.v1.EnrollmentService" in listed.split()
    assert "rpc RegisterEntity" in described
    # Comments survive: operators read what each RPC does straight from grpcurl.
    assert "license key" in described.lower()


def test_oversized_messages_are_refused_by_the_configured_bound(ca: Pki, tmp_path: Path):
    async def scenario():
        config = node_config(
            tmp_path, ca, "approval", "institution", limits={"max_message_bytes": 1024}
        )
        async with running(config) as node:
            async with ca.channel(node.runtime.address) as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(
                            request_id="big", role=4, note="x" * 4096
                        ),
                        timeout=5,
                    )
                )

    assert asyncio.run(scenario()).code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unexpected_failures_are_internal_without_a_stack_trace(
    ca: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A bug on our side: INTERNAL, the trace ID to quote, nothing of the internals."""

    def broken(*args: object) -> None:
        raise RuntimeError("disk /var/secret/approval.db is corrupt")

    monkeypatch.setattr(enrollment, "get_entity", broken)

    async def scenario():
        async with running(node_config(tmp_path, ca, "approval", "institution")) as node:
            async with ca.channel(node.runtime.address) as channel:
                return await refusal(
                    approval_pb2_grpc.ApprovalAdminServiceStub(channel).GetEntity(
                        approval_pb2.GetEntityRequest(entity_id="shop-1"),
                        timeout=5,
                        metadata=[("x-suretynet-trace-id", "trace-bug-1")],
                    )
                )

    refused = asyncio.run(scenario())
    assert refused.code == grpc.StatusCode.INTERNAL
    # The legacy trace label is adopted as the trace it names (W3C trace ID format).
    assert logs.trace_id_for("trace-bug-1") in refused.message
    assert "secret" not in refused.message
    assert "Traceback" not in refused.message
