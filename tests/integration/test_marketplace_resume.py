"""Resumable mediation flows (DESIGN: resumable flows) with real nodes on real mutual TLS.

A partner that is down when a step is taken does not lose the step: the calling
marketplace recorded it before sending, and its resume loop sends it again, with the same
request_id, once the partner is back.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.type.v1 import types_pb2

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


def test_steps_taken_while_the_partner_is_down_complete_when_it_is_back(ca: Pki, tmp_path: Path):
    """Reply and shipment report each survive their receiver being down, without a retry."""

    async def scenario() -> None:
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
            configs = {
                entity: node_config(
                    tmp_path,
                    ca,
                    "marketplace",
                    entity,
                    approval_address=address,
                    program_serial=serial,
                    listen_address=f"127.0.0.1:{free_port()}",
                    options=FAST_RESUME,
                )
                for entity, serial in zip(("market-1", "market-2"), serials, strict=True)
            }
            nodes: dict[str, Node] = {}

            async def start(entity: str) -> None:
                nodes[entity] = Node(configs[entity])
                await nodes[entity].start()

            async def stop(entity: str) -> None:
                await nodes.pop(entity).stop()

            try:
                for entity in configs:
                    await start(entity)

                operators: dict[str, Operator] = {}

                def operator(entity: str) -> Operator:
                    # The node port stays the same across restarts, so one channel serves.
                    if entity not in operators:
                        operators[entity] = Operator(ca.channel(configs[entity].listen_address))
                    return operators[entity]

                await operator("market-2").commodity("resume-chair", 4000, 5)
                await sign_contract(
                    operator("market-1"),
                    "market-1",
                    operator("market-2"),
                    "market-2",
                    "c12",
                    mode=pb.SETTLEMENT_MODE_PURCHASER_MARKETPLACE_BILLS,
                    fee_basis_points=100,
                )
                await operator("market-1").member("resumer", "password-resumer")
                buyer = Purchaser(member_channel(nodes["market-1"].runtime.member_address, ca.ca))
                await buyer.login("resumer", "password-resumer")
                asked = await buyer.call("RequestPurchase", commodity_id="resume-chair", quantity=2)
                transaction_id = asked.transaction.transaction_id

                # market-2 goes down; the purchaser's acceptance is recorded, not lost.
                await stop("market-2")
                reply = {
                    "request_id": "accept-1",
                    "transaction_id": transaction_id,
                    "estimate_id": asked.transaction.estimate.estimate_id,
                    "decision": pb.ESTIMATE_DECISION_ACCEPT,
                }
                unavailable = await refusal(buyer.call("ReplyToEstimate", **reply))
                assert unavailable.reason == "PEER_UNAVAILABLE"
                await start("market-2")

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
                await stop("market-1")
                await operator("market-2").call(
                    "ShipOrder", transaction_id=mediated_id, status=pb.SHIPMENT_STATUS_DELIVERED
                )
                await start("market-1")
                buyer = Purchaser(member_channel(nodes["market-1"].runtime.member_address, ca.ca))
                await buyer.login("resumer", "password-resumer")

                async def settled() -> bool:
                    return await state_at_market_1() == pb.TRANSACTION_STATE_SETTLED

                await eventually(settled)
                payouts = (await operator("market-2").call("ListPayouts")).payouts
                assert [
                    (p.gross_amount.amount_minor, p.net_amount.amount_minor) for p in payouts
                ] == [(8000, 7920)]
            finally:
                for entity in list(nodes):
                    await stop(entity)

    asyncio.run(scenario())
