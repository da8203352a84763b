"""Builds the approval node: the credit guarantee institution's transaction approval server."""

from __future__ import annotations

import asyncio
import datetime

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

from nodes.approval.audit import AuditedApprovalAdminServicer
from nodes.approval.directory import DirectoryServicer
from nodes.approval.enrollment import LicensePolicy, registered_addresses
from nodes.approval.guarantee_push import GuaranteePusher
from nodes.approval.servicer import (
    POLICIES,
    EnrollmentServicer,
    VerifiedKeyCache,
    license_key_check,
)
from nodes.approval.transaction_servicer import TransactionServicer
from nodes.common.audit_chain import CheckpointPublisher, checkpoint_interval_s
from nodes.common.correlation import unregistered
from nodes.common.identity import EntityIdentity
from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.server import Service
from storage.approval.repository import ApprovalRepository

SERVICES = approval_pb2.DESCRIPTOR.services_by_name


def build(runtime: NodeRuntime) -> RoleParts:
    """Approval serves enrollment, the admin console, the directory and transactions."""
    options = runtime.config.options
    license_policy = LicensePolicy(
        validity=datetime.timedelta(days=float(options.get("license_key_validity_days", 365))),
        rotation_grace=datetime.timedelta(
            seconds=float(options.get("license_key_rotation_grace_s", 300))
        ),
    )
    repo = ApprovalRepository(runtime.store.database)
    store = runtime.store
    limits = runtime.config.limits
    verified_keys = VerifiedKeyCache(limits.identity_cache_ttl_s, limits.identity_cache_entries)
    max_cache_age_s = int(options.get("related_information_max_cache_age_s", 5))
    # The transaction record database's signed checkpoints (nodes/common/audit_chain.py).
    checkpoints = CheckpointPublisher(
        store, repo.audit, runtime.config, checkpoint_interval_s(runtime.config)
    )
    services = [
        Service(
            SERVICES["EnrollmentService"].full_name,
            EnrollmentServicer(store, repo, license_policy, verified_keys),
            approval_pb2_grpc.add_EnrollmentServiceServicer_to_server,
        ),
        Service(
            SERVICES["ApprovalAdminService"].full_name,
            AuditedApprovalAdminServicer(
                store, repo, verified_keys, runtime.config.entity_id, checkpoints
            ),
            approval_pb2_grpc.add_ApprovalAdminServiceServicer_to_server,
        ),
        Service(
            SERVICES["DirectoryService"].full_name,
            DirectoryServicer(store, repo, max_cache_age_s),
            approval_pb2_grpc.add_DirectoryServiceServicer_to_server,
        ),
        Service(
            SERVICES["TransactionService"].full_name,
            TransactionServicer(runtime, repo),
            approval_pb2_grpc.add_TransactionServiceServicer_to_server,
        ),
    ]

    async def registered_address(identity: EntityIdentity) -> tuple[str, float]:
        # Approval reads its own registry, cached under the same bound it gives every node.
        row = await store.run(lambda: repo.entity(identity.entity_id))
        if row is None or row.role != identity.role:
            raise unregistered(identity)
        # With replicas, a call from any replica's host is the entity's own.
        return ",".join(registered_addresses(row)), float(max_cache_age_s)

    # Claim 10: guarantees are pushed to push-variant shops as the registry changes.
    pusher = GuaranteePusher(
        runtime,
        repo,
        interval_s=float(options.get("guarantee_push_interval_s", 0.5)),
        max_backoff_s=float(options.get("guarantee_push_max_backoff_s", 30)),
    )
    background: list[asyncio.Task[None]] = []

    async def on_serving() -> None:
        background.append(asyncio.create_task(pusher.run(), name="guarantee-push"))
        background.append(asyncio.create_task(checkpoints.run(), name="audit-checkpoint"))

    return RoleParts(
        services=services,
        policies=POLICIES,
        tables=repo.tables,
        credential_table=None,
        checks=[license_key_check(store, repo, verified_keys)],
        address_lookup=registered_address,
        on_serving=on_serving,
        # A last checkpoint on a graceful stop, so that nothing recorded goes unsigned.
        on_stop=checkpoints.publish,
        background=background,
    )
