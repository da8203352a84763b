"""Builds the retail node: a retail entity's (shop's) server."""

from __future__ import annotations

import asyncio

from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.registration import retail_registration
from nodes.common.server import Service
from nodes.retail.cancellation import CancellationFlow
from nodes.retail.discovery import Discovery, DiscoverySettings
from nodes.retail.peers import RetailPeers
from nodes.retail.purchase import DEFAULT_ORDER_LIFETIME_S, PurchaseFlow
from nodes.retail.servicer import (
    POLICIES,
    AnonymousIdServicer,
    GuaranteeReceiverServicer,
    RetailAdminServicer,
    ShopServicer,
)
from storage.retail.repository import RetailRepository

SERVICES = retail_pb2.DESCRIPTOR.services_by_name


def build(runtime: NodeRuntime) -> RoleParts:
    """Retail serves shoppers (member port), settlement and approval, and its admin."""
    options = dict(runtime.config.options)
    repo = RetailRepository(runtime.store.database)
    peers = RetailPeers(runtime)
    discovery = Discovery(runtime, repo, peers, DiscoverySettings.from_options(options))

    def identification() -> types_pb2.RetailEntityIdentification:
        # What the shop registered: settlement has approval compare the two (step 6).
        return types_pb2.RetailEntityIdentification(
            retail_entity_id=runtime.config.entity_id,
            display_name=runtime.config.display_name,
            address=runtime.registered_address,
        )

    flow = PurchaseFlow(
        runtime,
        repo,
        peers,
        discovery,
        identification,
        accepted_methods=[
            str(method) for method in options.get("payment_methods", ["single_payment"])
        ],
        order_lifetime_s=float(str(options.get("order_lifetime_s", DEFAULT_ORDER_LIFETIME_S))),
    )
    cancellations = CancellationFlow(
        runtime,
        repo,
        peers,
        identification,
        procedure=str(options.get("cancel_procedure", "verified")),
    )
    services = [
        Service(
            SERVICES["ShopService"].full_name,
            ShopServicer(runtime, repo, peers, flow, cancellations),
            retail_pb2_grpc.add_ShopServiceServicer_to_server,
        ),
        Service(
            SERVICES["AnonymousIdService"].full_name,
            AnonymousIdServicer(runtime, repo, peers),
            retail_pb2_grpc.add_AnonymousIdServiceServicer_to_server,
        ),
        Service(
            SERVICES["GuaranteeReceiverService"].full_name,
            GuaranteeReceiverServicer(runtime, repo, discovery),
            retail_pb2_grpc.add_GuaranteeReceiverServiceServicer_to_server,
        ),
        Service(
            SERVICES["RetailAdminService"].full_name,
            RetailAdminServicer(runtime, repo, discovery, cancellations),
            retail_pb2_grpc.add_RetailAdminServiceServicer_to_server,
        ),
    ]
    background: list[asyncio.Task[None]] = []
    resume_interval_s = float(options.get("purchase_resume_interval_s", 5))

    async def on_serving() -> None:
        background.append(asyncio.create_task(discovery.run(), name="guarantee-refresh"))
        background.append(
            asyncio.create_task(flow.run_resumer(resume_interval_s), name="purchase-resume")
        )
        background.append(
            asyncio.create_task(
                cancellations.resumer().run(resume_interval_s), name="cancellation-resume"
            )
        )

    return RoleParts(
        services=services,
        policies=POLICIES,
        tables=repo.tables,
        credential_table=repo.credentials,
        registration=retail_registration,
        on_serving=on_serving,
        background=background,
    )
