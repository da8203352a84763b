"""The purchase end to end (seed 001 claims 1, 10, 19, 28-30): every node its own process.

One network for the module, with one shop per discovery variant: shop-1 directory
(claim 1), shop-2 push (claim 10), shop-3 cache (claim 19).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import logs
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.local import LocalNetwork, restart_node, stop_node
from tests.e2e.purchase_support import (
    SHOP_3_PRIVATE_DETAILS,
    VARIANT_SHOPS,
    anonymous_id,
    buy,
    password_of,
    records,
    rpcs_received,
    start_purchase_network,
    table_rows,
)
from tests.support import refusal


@pytest.fixture(scope="module")
def purchase_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    return start_purchase_network(network_factory)


@pytest.mark.parametrize("variant", ["directory", "push", "cache"])
def test_a_purchase_leaves_four_records_that_agree(purchase_network: LocalNetwork, variant: str):
    """Each variant: the shop's sales record, the agency's order and billing, verification's
    report and approval's record agree on order number, amount and currency."""
    network, shop = purchase_network, VARIANT_SHOPS[variant]

    async def scenario() -> None:
        purchase = await buy(
            network, "agency-1", "alice", shop, [("tea", 2), ("mug", 1)], f"test-{variant}"
        )
        order = purchase.order
        assert order.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert order.amount.amount_minor == 2 * 1_200 + 2_500
        assert order.amount.currency_code == "USD"
        assert order.anonymous_user_id.startswith("4111")
        assert order.trace_id == logs.trace_id_for(f"test-{variant}")
        found = await records(network, order.order_number, shop, "agency-1")
        amounts = {
            "sales": found["sales"].billing_details.amount,
            "order": found["order"].billing_details.amount,
            "billing": found["billing"].amount,
            "report": found["report"].billing_details.amount,
            "record": found["record"].amount,
        }
        for name, amount in amounts.items():
            assert (amount.amount_minor, amount.currency_code) == (4_900, "USD"), name
        assert found["sales"].order_number == found["order"].order_number == order.order_number
        assert found["report"].order_number == found["record"].order_number == order.order_number
        assert found["billing"].billing_state == settlement_pb2.BILLING_STATE_NOT_YET_BILLED
        assert found["order"].member_id == "alice"
        assert found["record"].transaction_verification_id == (
            found["sales"].transaction_verification_id
        )
        assert found["record"].retail_entity_id == shop
        assert found["sales"].settlement_agency_id == "agency-1"

    asyncio.run(scenario())


def test_the_member_gets_a_completion_notice_listed_and_streamed(purchase_network: LocalNetwork):
    """Step 7: the notice carries the order number, shop, lines and amount, in both forms."""
    network = purchase_network

    async def scenario() -> None:
        ca = network.ca.read_bytes()
        async with AgencyClient(network.node("agency-2").member_address, ca) as member:
            await member.login("carol", password_of("agency-2", "carol"))
            before = await member.completion_notices()
            after_sequence = max((n.sequence for n in before), default=0)
            stream = member.stream_completion_notices(after_sequence, timeout_s=30)
            next_notice = asyncio.ensure_future(stream.__anext__())
            purchase = await buy(network, "agency-2", "carol", "shop-1", [("kettle", 1)])
            streamed = await asyncio.wait_for(next_notice, timeout=20)
            next_notice.cancel()
            listed = await member.completion_notices()
        assert streamed.order_number == purchase.order.order_number
        assert streamed.sequence == after_sequence + 1
        assert streamed.retail_entity_id == "shop-1"
        assert streamed.retail_entity_display_name == "Shop One"
        assert streamed.amount.amount_minor == 7_900
        assert [line.catalog_item_id for line in streamed.lines] == ["kettle"]
        assert streamed.anonymous_user_id == purchase.anonymous_user_id
        assert listed[0] == streamed

    asyncio.run(scenario())


def test_anonymous_ids_carry_the_prefix_and_differ_per_shop(purchase_network: LocalNetwork):
    """One member, three shops: three unlinkable IDs, each starting with the routing prefix;
    asking again for the same shop gives the same ID."""
    network = purchase_network

    async def scenario() -> None:
        ca = network.ca.read_bytes()
        async with AgencyClient(network.node("agency-1").member_address, ca) as member:
            await member.login("alice", password_of("agency-1", "alice"))
            issued = {shop: await member.anonymous_user_id(shop) for shop in VARIANT_SHOPS.values()}
            again = await member.anonymous_user_id("shop-2")
        values = {shop: item.anonymous_user_id.value for shop, item in issued.items()}
        assert len(set(values.values())) == 3
        assert all(value.startswith("4111") and len(value) == 20 for value in values.values())
        assert again.anonymous_user_id.value == values["shop-2"]
        assert issued["shop-1"].delivered_to_retail_entity
        assert not issued["shop-2"].delivered_to_retail_entity
        for item in issued.values():
            assert item.anonymous_user_id.expires_at.ToSeconds() > time.time()

    asyncio.run(scenario())


def test_a_flow_cut_by_an_outage_resumes_with_the_same_order(purchase_network: LocalNetwork):
    """Verification is down: PlaceOrder answers PEER_UNAVAILABLE and the order waits at its
    step. Once verification is back, the same request_id finishes the same order, billed once."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        ca = network.ca.read_bytes()
        stop_node(network.node("verification"))
        try:
            async with ShopClient(network.node("shop-1").member_address, ca) as shop:
                down = await refusal(shop.place_order(value, [("mug", 2)], request_id="resume-1"))
            assert (down.code, down.reason) == (grpc.StatusCode.UNAVAILABLE, "PEER_UNAVAILABLE")
            pending = [
                row
                for row in table_rows(network, "shop-1")["shop_order"]
                if row["request_id"] == "resume-1"
            ]
            assert [(row["status"], row["step"]) for row in pending] == [("PENDING", "bill")]
        finally:
            await restart_node(network, "verification")
        # The client retries with the same request_id until the peers' channels reconnect.
        deadline = time.monotonic() + 30
        async with ShopClient(network.node("shop-1").member_address, ca) as shop:
            while True:
                try:
                    order = await shop.place_order(value, [("mug", 2)], request_id="resume-1")
                    break
                except grpc.RpcError as error:
                    # Pending answers: UNAVAILABLE, or ABORTED while the shop's resumer holds
                    # the order (REQUEST_IN_PROGRESS); the client retries both.
                    pending_codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)
                    if error.code() not in pending_codes or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        assert order.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert order.order_number == pending[0]["order_number"]
        agency_orders = [
            row
            for row in table_rows(network, "agency-1")["settlement_order"]
            if row["order_number"] == order.order_number
        ]
        assert len(agency_orders) == 1
        assert agency_orders[0]["reported_at"] is not None
        found = await records(network, order.order_number, "shop-1", "agency-1")
        assert found["record"].amount.amount_minor == 5_000

    asyncio.run(scenario())


def test_payment_information_comes_from_approval_through_the_agency_and_the_shop(
    purchase_network: LocalNetwork,
):
    """Claims 1.2, 10.2, 19.2: the shop's payment methods and private details, as approval
    holds them, reach the member through its agency (MemberService) and through the shop
    (ShopService); each relay asked approval for them."""
    network = purchase_network

    async def scenario() -> None:
        ca = network.ca.read_bytes()
        async with AgencyClient(network.node("agency-1").member_address, ca) as member:
            await member.login("alice", password_of("agency-1", "alice"))
            through_agency = await member.payment_information("shop-3")
        async with ShopClient(network.node("shop-3").member_address, ca) as shopper:
            through_shop = await shopper.payment_information()
        for information in (through_agency, through_shop):
            assert information.retail_entity_id == "shop-3"
            assert information.display_name == "Shop Three"
            assert list(information.accepted_payment_methods) == [
                types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
                types_pb2.PAYMENT_METHOD_INSTALLMENTS,
            ]
            assert list(information.accepted_currency_codes) == ["USD"]
            assert information.private_details == types_pb2.RetailEntityPrivateDetails(
                **SHOP_3_PRIVATE_DETAILS
            )
            assert information.HasField("updated_at")
        assert through_agency == through_shop
        for asker in ("agency-1", "shop-3"):
            assert rpcs_received(network, "institution", "GetPaymentInformation", asker), asker

    asyncio.run(scenario())
