"""Builds the marketplace node (seed 000 claims 9-11): the marketplace server itself.

It serves purchasers on the member port (session tokens), partner marketplaces on the node
port (mutual TLS), and its operator (admin certificate); and runs the resume loop that
finishes mediation flows a crash or an unreachable partner left open.
"""

from __future__ import annotations

import asyncio
import logging

from suretynet.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc

from nodes.common import logs
from nodes.common.credentials import LoginThrottle
from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.registration import registration_request
from nodes.common.server import Service
from nodes.marketplace import catalog
from nodes.marketplace.mediation import Mediator
from nodes.marketplace.partners import Partners
from nodes.marketplace.servicer import (
    POLICIES,
    MarketplaceAdminServicer,
    MediationServicer,
    PurchaserServicer,
)
from nodes.marketplace.settings import MarketplaceSettings
from storage.common.models import utc_now
from storage.marketplace.repository import MarketplaceRepository

log = logging.getLogger(__name__)
SERVICES = marketplace_pb2.DESCRIPTOR.services_by_name


def build(runtime: NodeRuntime) -> RoleParts:
    """Marketplace services, their policies, tables, seeding and the resume loop."""
    settings = MarketplaceSettings.from_options(runtime.config.options)
    repo = MarketplaceRepository(runtime.store.database)
    store = runtime.store
    self_id = runtime.config.entity_id
    partners = Partners(runtime, repo, settings)
    common = (store, repo, settings, self_id, partners)
    mediator = Mediator(store, repo, partners, settings, self_id)
    services = [
        Service(
            SERVICES["PurchaserService"].full_name,
            PurchaserServicer(
                mediator,
                LoginThrottle.for_node(store, repo.login_failures, runtime.config.limits),
                *common,
            ),
            marketplace_pb2_grpc.add_PurchaserServiceServicer_to_server,
        ),
        Service(
            SERVICES["MediationService"].full_name,
            MediationServicer(*common),
            marketplace_pb2_grpc.add_MediationServiceServicer_to_server,
        ),
        Service(
            SERVICES["MarketplaceAdminService"].full_name,
            MarketplaceAdminServicer(*common),
            marketplace_pb2_grpc.add_MarketplaceAdminServiceServicer_to_server,
        ),
    ]
    parts = RoleParts(
        services=services,
        policies=POLICIES,
        tables=repo.tables,
        credential_table=repo.credentials,
        registration=registration_request,
    )

    async def on_serving() -> None:
        created = await store.run(
            lambda: catalog.seed(repo, runtime.config.options, self_id, utc_now())
        )
        if created:
            logs.event(log, "seeded from config", created=created)
        parts.background.append(asyncio.create_task(partners.resume_loop()))

    parts.on_serving = on_serving
    return parts
