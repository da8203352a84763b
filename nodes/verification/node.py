"""Builds the verification node: the institution's transaction verification server."""

from __future__ import annotations

from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.server import Service
from nodes.verification.servicer import POLICIES, VerificationAdminServicer, VerificationServicer
from storage.verification.repository import VerificationRepository


def build(runtime: NodeRuntime) -> RoleParts:
    """Verification serves VerificationService to its peers and VerificationAdminService to admin."""
    repo = VerificationRepository(runtime.store.database)
    services = verification_pb2.DESCRIPTOR.services_by_name
    return RoleParts(
        services=[
            Service(
                services["VerificationService"].full_name,
                VerificationServicer(runtime.store, repo),
                verification_pb2_grpc.add_VerificationServiceServicer_to_server,
            ),
            Service(
                services["VerificationAdminService"].full_name,
                VerificationAdminServicer(runtime.store, repo, runtime.config.entity_id),
                verification_pb2_grpc.add_VerificationAdminServiceServicer_to_server,
            ),
        ],
        policies=POLICIES,
        tables=repo.tables,
        credential_table=repo.credentials,
        registration=None,
    )
