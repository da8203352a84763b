"""Resumable mediation flows (DESIGN: resumable flows) with real nodes on real mutual TLS.

A partner that is down when a step is taken does not lose the step: the calling
marketplace recorded it before sending, and its resume loop sends it again, with the same
request_id, once the partner is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common.config import NodeConfig
from nodes.common.node import Node
from nodes.marketplace.client import Operator, Purchaser, member_channel, sign_contract
from tests.support import Pki, eventually, node_config, refusal, running

FAST_RESUME = {
    "resume_interval_s": 0.1,
    "resume_after_s": 0.2,
    "resume_backoff_max_s": 0.3,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class TwoMarkets:
    """market-1 (the requester) and market-2 (the supplier) under one claim 6 contract."""

    ca: Pki
    configs: dict[str, NodeConfig]
    nodes: dict[str, Node] = field(default_factory=dict)
    operators: dict[str, Operator] = field(default_factory=dict)

    async def start(self, entity: str) -> None:
        self.nodes[entity] = Node(self.configs[entity])
        await self.nodes[entity].start()

    async def stop(self, entity: str) -> None:
        await self.nodes.pop(entity).stop()

    def operator(self, entity: str) -> Operator:
        # The node port stays the same across restarts, so one channel serves.
        if entity not in self.operators:
            self.operators[entity] = Operator(self.ca.channel(self.configs[entity].listen_address))
        return self.operators[entity]

    async def buyer(self, member_id: str) -> Purchaser:
        await self.operator("market-1").member(member_id, f"password-{member_id}")
        buyer = Purchaser(member_channel(self.nodes["market-1"].runtime.member_address, self.ca.ca))
        await buyer.login(member_id, f"password-{member_id}")
        return buyer


@contextlib.asynccontextmanager
async def two_markets(
    ca: Pki, tmp_path: Path, options: dict[str, Any] | None = None
) -> AsyncIterator[TwoMarkets]:
    """Approval plus two enrolled marketplaces with a contract; every node always stopped."""
    async with running(node_config(tmp_path, ca, "approval", "institution")) as approval:
        address = approval.runtime.address
        async with ca.channel(address) as channel:
            admin = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
            serials = [
                (
                    await admin.IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(
                            request_id=f"serial-{number}", role=types_pb2.ROLE_MARKETPLACE
                        ),
                        timeout=5,
                    )
                ).program_serial.serial
                for number in (1, 2)
            ]
        markets = TwoMarkets(
            ca,
            {
                entity: node_config(
                    tmp_path,
                    ca,
                    "marketplace",
                    entity,
                    approval_address=address,
                    program_serial=serial,
                    listen_address=f"127.0.0.1:{free_port()}",
                    options={**FAST_RESUME, **(options or {})},
                )
                for entity, serial in zip(("market-1", "market-2"), serials, strict=True)
            },
        )
        try:
            for entity in markets.configs:
                await markets.start(entity)
            await sign_contract(
                markets.operator("market-1"),
                "market-1",
                markets.operator("market-2"),
                "market-2",
                "c12",
                mode=pb.SETTLEMENT_MODE_PURCHASER_MARKETPLACE_BILLS,
                fee_basis_points=100,
            )
            yield markets
        finally:
            for entity in list(markets.nodes):
                await markets.stop(entity)


def test_steps_taken_while_the_partner_is_down_complete_when_it_is_back(ca: Pki, tmp_path: Path):
    """Reply and shipment report each survive their receiver being down, without a retry."""

    async def scenario() -> None:
        async with two_markets(ca, tmp_path) as markets:
            operator = markets.operator
            await operator("market-2").commodity("resume-chair", 4000, 5)
            buyer = await markets.buyer("resumer")
            asked = await buyer.call("RequestPurchase", commodity_id="resume-chair", quantity=2)
            transaction_id = asked.transaction.transaction_id

            # market-2 goes down; the purchaser's acceptance is recorded, not lost.
            await markets.stop("market-2")
            reply = {
                "request_id": "accept-1",
                "transaction_id": transaction_id,
                "estimate_id": asked.transaction.estimate.estimate_id,
                "decision": pb.ESTIMATE_DECISION_ACCEPT,
            }
            unavailable = await refusal(buyer.call("ReplyToEstimate", **reply))
            assert unavailable.reason == "PEER_UNAVAILABLE"
            await markets.start("market-2")

            async def state_at_market_1() -> int:
                got = await buyer.call("GetTransaction", transaction_id=transaction_id)
                return int(got.transaction.state)

            async def ordered() -> bool:
                return await state_at_market_1() == pb.TRANSACTION_STATE_ORDERED

            await eventually(ordered)
            # The purchaser's retry with the same request_id gets the finished answer.
            retried = await buyer.call("ReplyToEstimate", **reply)
            assert retried.transaction.state == pb.TRANSACTION_STATE_ORDERED

            # market-1 goes down; market-2's delivery report waits for it.
            detail = await operator("market-1").call(
                "GetTransactionDetail", transaction_id=transaction_id
            )
            mediated_id = detail.transaction.mediated_transaction_id
            await markets.stop("market-1")
            await operator("market-2").call(
                "ShipOrder", transaction_id=mediated_id, status=pb.SHIPMENT_STATUS_DELIVERED
            )
            await markets.start("market-1")
            buyer = Purchaser(
                member_channel(markets.nodes["market-1"].runtime.member_address, ca.ca)
            )
            await buyer.login("resumer", "password-resumer")

            async def settled() -> bool:
                return await state_at_market_1() == pb.TRANSACTION_STATE_SETTLED

            await eventually(settled)
            payouts = (await operator("market-2").call("ListPayouts")).payouts
            assert [(p.gross_amount.amount_minor, p.net_amount.amount_minor) for p in payouts] == [
                (8000, 7920)
            ]

    asyncio.run(scenario())


def test_an_estimate_nobody_answers_expires_at_both_marketplaces(ca: Pki, tmp_path: Path):
    """Defect 6: a mediated estimate left without a reply past its validity becomes
    ESTIMATE_EXPIRED at the requester and at the supplier, each on its own; an acceptance
    after that is refused. The old marketplaces kept it ESTIMATE_PENDING for ever."""

    async def scenario() -> None:
        async with two_markets(ca, tmp_path, {"estimate_validity_s": 1}) as markets:
            await markets.operator("market-2").commodity("brief-chair", 4000, 5)
            buyer = await markets.buyer("hesitant")
            asked = await buyer.call("RequestPurchase", commodity_id="brief-chair", quantity=1)
            transaction_id = asked.transaction.transaction_id
            detail = await markets.operator("market-1").call(
                "GetTransactionDetail", transaction_id=transaction_id
            )
            mediated_id = detail.transaction.mediated_transaction_id

            supplier = markets.configs["market-2"].listen_address
            async with ca.channel(supplier, "marketplace", "market-1") as channel:
                as_requester = marketplace_pb2_grpc.MediationServiceStub(channel)

                async def expired_at_both() -> bool:
                    ours = await buyer.call("GetTransaction", transaction_id=transaction_id)
                    theirs = await as_requester.GetMediatedTransaction(
                        pb.GetMediatedTransactionRequest(mediated_transaction_id=mediated_id),
                        timeout=5,
                    )
                    return (ours.transaction.state, theirs.mediated_transaction.state) == (
                        pb.TRANSACTION_STATE_ESTIMATE_EXPIRED,
                        pb.TRANSACTION_STATE_ESTIMATE_EXPIRED,
                    )

                await eventually(expired_at_both)
            late = await refusal(
                buyer.call(
                    "ReplyToEstimate",
                    transaction_id=transaction_id,
                    estimate_id=asked.transaction.estimate.estimate_id,
                    decision=pb.ESTIMATE_DECISION_ACCEPT,
                )
            )
            assert late.reason in ("TRANSACTION_STATE_INVALID", "ESTIMATE_EXPIRED")

    asyncio.run(scenario())
