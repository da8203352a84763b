"""Builds the settlement node: a settlement agency's member maintenance server."""

from __future__ import annotations

import asyncio

from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common.node import NodeRuntime, RoleParts
from nodes.common.registration import settlement_registration
from nodes.common.server import Service
from nodes.settlement.notices import NoticeBoard
from nodes.settlement.peers import SettlementPeers
from nodes.settlement.servicer import (
    POLICIES,
    BillingServicer,
    MemberServicer,
    SettlementAdminServicer,
)
from nodes.settlement.settings import SettlementSettings
from storage.settlement.repository import SettlementRepository

SERVICES = settlement_pb2.DESCRIPTOR.services_by_name


def build(runtime: NodeRuntime) -> RoleParts:
    """Settlement serves members (member port), shops and its admin (node port)."""
    settings = SettlementSettings.from_options(dict(runtime.config.options))
    repo = SettlementRepository(runtime.store.database)
    peers = SettlementPeers(runtime)
    board = NoticeBoard()
    billing = BillingServicer(runtime, repo, peers, board, settings)
    background: list[asyncio.Task[None]] = []

    async def on_serving() -> None:
        background.append(
            asyncio.create_task(
                billing.flows.resumer().run(settings.resume_interval_s), name="agency-resume"
            )
        )

    services = [
        Service(
            SERVICES["MemberService"].full_name,
            MemberServicer(runtime, repo, peers, board, settings),
            settlement_pb2_grpc.add_MemberServiceServicer_to_server,
        ),
        Service(
            SERVICES["BillingService"].full_name,
            billing,
            settlement_pb2_grpc.add_BillingServiceServicer_to_server,
        ),
        Service(
            SERVICES["SettlementAdminService"].full_name,
            SettlementAdminServicer(runtime, repo),
            settlement_pb2_grpc.add_SettlementAdminServiceServicer_to_server,
        ),
    ]
    return RoleParts(
        services=services,
        policies=POLICIES,
        tables=repo.tables,
        credential_table=repo.credentials,
        registration=settlement_registration,
        on_serving=on_serving,
        background=background,
    )
