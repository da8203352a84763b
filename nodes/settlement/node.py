"""Builds the settlement node. Its services are declared in full; behaviour lands per issue."""

from __future__ import annotations

from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common.node import NodeRuntime, RoleParts, declared_services
from nodes.common.registration import settlement_registration
from storage.common.database import bind
from storage.common.models import IdempotencyRecord, NodeCredential

CALLERS = ("approval", "verification", "settlement", "retail", "marketplace", "admin")


def build(runtime: NodeRuntime) -> RoleParts:
    services, policies = declared_services(settlement_pb2, settlement_pb2_grpc, CALLERS)
    idempotency = bind(runtime.store.database, IdempotencyRecord)
    credentials = bind(runtime.store.database, NodeCredential)
    return RoleParts(
        services=services,
        policies=policies,
        tables=(idempotency, credentials),
        credential_table=credentials,
        registration=settlement_registration,
    )
