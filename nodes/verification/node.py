"""Builds the verification node: the institution's transaction verification server."""

from __future__ import annotations

import asyncio

from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common.audit_chain import CheckpointPublisher, checkpoint_interval_s
from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.server import Service
from nodes.verification.audit import VerificationAdminServicer
from nodes.verification.servicer import POLICIES, VerificationServicer
from storage.verification.repository import VerificationRepository


def build(runtime: NodeRuntime) -> RoleParts:
    """Verification serves VerificationService to settlement, retail, approval and admin,
    and VerificationAdminService (its audit chain) to the institution's operators."""
    repo = VerificationRepository(runtime.store.database)
    services = verification_pb2.DESCRIPTOR.services_by_name
    checkpoints = CheckpointPublisher(
        runtime.store, repo.audit, runtime.config, checkpoint_interval_s(runtime.config)
    )
    background: list[asyncio.Task[None]] = []

    async def on_serving() -> None:
        background.append(asyncio.create_task(checkpoints.run(), name="audit-checkpoint"))

    return RoleParts(
        services=[
            Service(
                services["VerificationService"].full_name,
                VerificationServicer(runtime.store, repo),
                verification_pb2_grpc.add_VerificationServiceServicer_to_server,
            ),
            Service(
                services["VerificationAdminService"].full_name,
                VerificationAdminServicer(
                    runtime.store, repo, runtime.config.entity_id, checkpoints
                ),
                verification_pb2_grpc.add_VerificationAdminServiceServicer_to_server,
            ),
        ],
        on_serving=on_serving,
        on_stop=checkpoints.publish,
        background=background,
        policies=POLICIES,
        tables=repo.tables,
        credential_table=repo.credentials,
        registration=None,
    )
