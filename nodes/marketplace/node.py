"""Builds the marketplace node. Its services are declared in full; behaviour lands per issue."""

from __future__ import annotations

from nodes.common.node import NodeRuntime, RoleParts, declared_services
from nodes.common.registration import registration_request
from storage.common.database import bind_models
from storage.common.models import RUNTIME_MODELS
from suretynet.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc

CALLERS = ("approval", "verification", "settlement", "retail", "marketplace", "admin")


def build(runtime: NodeRuntime) -> RoleParts:
    services, policies = declared_services(marketplace_pb2, marketplace_pb2_grpc, CALLERS)
    idempotency, credentials = bind_models(runtime.store.database, *RUNTIME_MODELS)
    return RoleParts(
        services=services,
        policies=policies,
        tables=(idempotency, credentials),
        credential_table=credentials,
        registration=registration_request,
    )
