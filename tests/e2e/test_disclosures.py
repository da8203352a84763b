"""Members see who saw their data, on the network `suretynet up` starts.

The agency records each anonymous user ID issued for a shop, each completion report to a
shop and transaction report to the institution, and each operator's read of the member's
orders. A marketplace records each credit enquiry on a purchaser, each credit guarantee
attached under a pseudonym and each fraud disclosure. Each member lists only its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.marketplace.client import Operator, Purchaser, member_channel
from nodes.member.client import AgencyClient
from nodes.network.local import LocalNetwork
from tests.e2e.purchase_support import anonymous_id, buy, password_of
from tests.support import refusal

Kind = types_pb2.DataDisclosureKind


async def agency_disclosures(
    network: LocalNetwork, member_id: str
) -> list[types_pb2.DataDisclosure]:
    """Every disclosure the member lists at agency-1, walking every page (two per page)."""
    ca = network.ca.read_bytes()
    async with AgencyClient(network.node("agency-1").member_address, ca) as member:
        await member.login(member_id, password_of("agency-1", member_id))
        found: list[types_pb2.DataDisclosure] = []
        token = ""
        while True:
            page = await member.data_disclosures(page_size=2, page_token=token)
            found += page.data_disclosures
            token = page.next_page_token
            if not token:
                return found


def of_kind(
    disclosures: Sequence[types_pb2.DataDisclosure], kind: int, reference: str
) -> list[types_pb2.DataDisclosure]:
    return [d for d in disclosures if d.kind == kind and d.reference == reference]


def test_an_agency_member_sees_each_disclosure_of_its_data_and_no_one_elses(
    network: LocalNetwork,
):
    """alice buys at shop-1: her anonymous ID went to shop-1, the completion report to
    shop-1, the transaction report to the institution; the agency's operator then reads her
    order. alice lists all four, paged and newest first, with who, what, when and why; bob,
    given an ID of his own, lists that and nothing of alice's."""

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", "shop-1", [("tea", 1)])
        order = purchase.order.order_number
        async with network.admin_channel(network.node("agency-1").address) as channel:
            await settlement_pb2_grpc.SettlementAdminServiceStub(channel).GetOrder(
                settlement_pb2.GetOrderRequest(order_number=order), timeout=10
            )
        mine = await agency_disclosures(network, "alice")
        [issued] = of_kind(
            mine, Kind.DATA_DISCLOSURE_KIND_ANONYMOUS_ID_ISSUED, purchase.anonymous_user_id
        )
        assert issued.recipient == "suretynet://retail/shop-1"
        assert "delivered to the shop" in issued.purpose
        [report] = of_kind(mine, Kind.DATA_DISCLOSURE_KIND_COMPLETION_REPORT, order)
        assert report.recipient == "suretynet://retail/shop-1"
        assert purchase.anonymous_user_id in report.data and "alice" not in report.data
        assert of_kind(mine, Kind.DATA_DISCLOSURE_KIND_TRANSACTION_REPORT, order)
        [read] = of_kind(mine, Kind.DATA_DISCLOSURE_KIND_OPERATOR_READ, order)
        assert read.recipient == "suretynet://admin/operator"
        assert "SettlementAdminService/GetOrder" in read.purpose
        for disclosure in (issued, report, read):
            assert disclosure.disclosed_at.seconds > 0 and disclosure.data
        moments = [d.disclosed_at.ToDatetime() for d in mine]
        assert moments == sorted(moments, reverse=True), "newest first"
        bobs_id, _ = await anonymous_id(network, "agency-1", "bob", "shop-2")
        bobs = await agency_disclosures(network, "bob")
        assert {d.reference for d in bobs} == {bobs_id}, "bob lists his own and only his own"

    asyncio.run(scenario())


def test_listing_disclosures_needs_the_members_own_session(network: LocalNetwork):
    async def scenario() -> None:
        channel = grpc.aio.secure_channel(
            network.node("agency-1").member_address,
            grpc.ssl_channel_credentials(network.ca.read_bytes()),
        )
        async with channel:
            error = await refusal(
                settlement_pb2_grpc.MemberServiceStub(channel).ListDataDisclosures(
                    settlement_pb2.ListDataDisclosuresRequest(),
                    metadata=[("authorization", "Bearer not-a-session")],
                    timeout=10,
                )
            )
        assert error.code == grpc.StatusCode.UNAUTHENTICATED

    asyncio.run(scenario())


async def purchaser_disclosures(
    network: LocalNetwork, member_id: str
) -> list[types_pb2.DataDisclosure]:
    async with member_channel(network.node("market-1").member_address, network.ca) as channel:
        purchaser = Purchaser(channel)
        await purchaser.login(member_id, f"{member_id}-pass")
        response = await purchaser.call("ListDataDisclosures", page_size=100)
        return list(response.data_disclosures)


def test_a_purchaser_sees_enquiries_guarantees_and_fraud_disclosures_about_it(
    network: LocalNetwork,
):
    """tanaka-trading asks market-1 for coffee, which only market-2 stocks: market-1's
    credit enquiry and the guarantee it attached for market-2 under a pseudonym are listed;
    once the operator marks the transaction unlawful, so is the disclosure to market-2.
    Another purchaser of market-1 lists none of it."""

    async def scenario() -> None:
        async with member_channel(network.node("market-1").member_address, network.ca) as channel:
            purchaser = Purchaser(channel)
            await purchaser.login("tanaka-trading", "tanaka-trading-pass")
            answer = await purchaser.call(
                "RequestPurchase",
                request_id=f"disclose-{uuid.uuid4().hex[:12]}",
                commodity_id="coffee-beans-1kg",
                quantity=1,
            )
        transaction_id = answer.transaction.transaction_id
        async with network.admin_channel(network.node("market-1").address) as channel:
            operator = Operator(channel)
            detail = await operator.call("GetTransactionDetail", transaction_id=transaction_id)
            await operator.call(
                "MarkTransactionUnlawful", transaction_id=transaction_id, reason="stolen card"
            )
        guarantee = detail.transaction.credit_guarantee
        mine = await purchaser_disclosures(network, "tanaka-trading")
        [enquiry] = of_kind(mine, Kind.DATA_DISCLOSURE_KIND_CREDIT_ENQUIRY, transaction_id)
        assert enquiry.recipient == "suretynet://marketplace/market-1"
        assert "points" in enquiry.data
        [attached] = of_kind(
            mine, Kind.DATA_DISCLOSURE_KIND_CREDIT_GUARANTEE, guarantee.guarantee_id
        )
        assert attached.recipient == "suretynet://marketplace/market-2"
        assert guarantee.purchaser_pseudonym in attached.data
        [fraud] = of_kind(
            mine,
            Kind.DATA_DISCLOSURE_KIND_FRAUD_DISCLOSURE,
            detail.transaction.mediated_transaction_id,
        )
        assert fraud.recipient == "suretynet://marketplace/market-2"
        assert "stolen card" in fraud.purpose
        others = await purchaser_disclosures(network, "sato-hanako")
        assert not {d.reference for d in others} & {transaction_id, guarantee.guarantee_id}
        assert not [d for d in others if d.kind == Kind.DATA_DISCLOSURE_KIND_FRAUD_DISCLOSURE]

    asyncio.run(scenario())
