"""The node side of enrollment: the registration request a node sends on first start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

if TYPE_CHECKING:
    from nodes.common.node import NodeRuntime


async def register(
    runtime: NodeRuntime, request: approval_pb2.RegisterEntityRequest
) -> approval_pb2.RegisterEntityResponse:
    """Sends the registration request (claims 4, 5) to approval; retried while unavailable."""
    stub = runtime.channels.stub(
        runtime.config.approval_address, approval_pb2_grpc.EnrollmentServiceStub
    )
    response: approval_pb2.RegisterEntityResponse = await runtime.channels.call(
        stub.RegisterEntity, request, peer="approval", idempotent=True, to_approval=True
    )
    return response
