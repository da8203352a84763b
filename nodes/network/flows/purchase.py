"""Demo flows for the purchase (seed 001 claims 1, 10, 19): one under each discovery variant.

Each flow is a member buying with the member client library: log in at the agency (step 1),
payment information (step 2), anonymous user ID (step 3), then the order at the shop, which
runs steps 4-11 across the network. The printed sequence is what the nodes logged.
"""

from __future__ import annotations

import asyncio
import time

from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc

from nodes.common.errors import DomainError, ErrorKind
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo import DemoFlow, FlowContext, expect_refusal
from nodes.network.demo_data import members_of, stock_catalog
from nodes.network.local import LocalNetwork, NodeSpec, start_node

CACHE_SHOP = NodeSpec(
    "retail",
    "shop-4",
    "Shop Four (cache discovery)",
    {"discovery": "cache", "cache_refresh_interval_s": 2},
    True,
)
CACHE_READY_TIMEOUT_S = 30.0


async def buy_order(
    context: FlowContext,
    agency: str,
    shop: str,
    items: list[tuple[str, int]],
    *,
    trace_id: str = "",
) -> tuple[retail_pb2.ShopOrder, str]:
    """A member of ``agency`` buys ``items`` at ``shop``; returns the order and its ID.

    ``trace_id`` defaults to a trace of its own, so that a flow about something else (a
    cancellation) does not print the purchase.
    """
    network = context.network
    trace = trace_id or f"{context.trace_id}-purchase"
    member = members_of(agency)[0]
    ca = network.ca.read_bytes()
    async with AgencyClient(network.node(agency).member_address, ca, trace_id=trace) as client:
        login = await client.login(member.member_id, member.password)
        information = await client.payment_information(shop)
        issued = await client.anonymous_user_id(shop)
        value = issued.anonymous_user_id.value
        async with ShopClient(network.node(shop).member_address, ca, trace_id=trace) as shop_client:
            order = await shop_client.place_order(value, items)
        notices = await client.completion_notices(page_size=1)
    if trace == context.trace_id:
        limit = login.member.credit_limit
        delivered = (
            " (delivered to the shop by the agency)" if issued.delivered_to_retail_entity else ""
        )
        context.note(
            f"step 1: {member.member_id} logged in at {agency}; credit limit "
            f"{limit.amount_minor / 100:.2f} {limit.currency_code}"
        )
        context.note(
            f"step 2: {information.display_name} accepts "
            f"{len(information.accepted_payment_methods)} payment method(s)"
        )
        context.note(f"step 3: anonymous user ID {value}{delivered}")
        context.note(
            f"order {order.order_number}: {retail_pb2.OrderStatus.Name(order.status)}, "
            f"{order.amount.amount_minor / 100:.2f} {order.amount.currency_code}, "
            f"verification {order.transaction_verification_id}"
        )
        if notices and notices[0].order_number == order.order_number:
            context.note(f"step 7: completion notice #{notices[0].sequence} reached the member")
    return order, value


async def buy(
    context: FlowContext, agency: str, shop: str, items: list[tuple[str, int]]
) -> retail_pb2.ShopOrder:
    """A purchase printed as the flow's own message sequence."""
    order, _ = await buy_order(context, agency, shop, items, trace_id=context.trace_id)
    return order


async def directory_purchase(context: FlowContext) -> None:
    """shop-1 finds the agency by a settlement agency identification search (claim 1)."""
    await buy(context, "agency-1", "shop-1", [("tea", 2), ("mug", 1)])


async def push_purchase(context: FlowContext) -> None:
    """shop-2 routes from the guarantees approval pushed to it (claim 10)."""
    await buy(context, "agency-2", "shop-2", [("kettle", 1)])


async def wait_for_cached_agency(
    network: LocalNetwork, shop: str, agency: str, within_s: float = CACHE_READY_TIMEOUT_S
) -> int:
    """Polls a push or cache shop's guarantee cache until ``agency`` is in it; returns the
    number of guarantees cached then."""
    deadline = time.monotonic() + within_s
    async with network.admin_channel(network.node(shop).address) as channel:
        admin = retail_pb2_grpc.RetailAdminServiceStub(channel)
        while time.monotonic() < deadline:
            cache = await admin.ListGuaranteeCache(
                retail_pb2.ListGuaranteeCacheRequest(), timeout=10
            )
            if any(g.settlement_agency_id == agency for g in cache.guarantees):
                return len(cache.guarantees)
            await asyncio.sleep(0.1)
    raise DomainError(ErrorKind.UNAVAILABLE, "PEER_UNAVAILABLE", f"{shop} never cached {agency}")


async def cache_purchase(context: FlowContext) -> None:
    """A shop with the cache variant joins, fills its guarantee database from the agencies
    (claim 19) and routes a purchase from it."""
    network = context.network
    if not any(node.spec.entity_id == CACHE_SHOP.entity_id for node in network.nodes):
        await start_node(network, CACHE_SHOP)
        await stock_catalog(network, network.node(CACHE_SHOP.entity_id).address)
    cached = await wait_for_cached_agency(network, CACHE_SHOP.entity_id, "agency-1")
    context.note(f"{CACHE_SHOP.entity_id} started with cache discovery; {cached} guarantees cached")
    await buy(context, "agency-1", CACHE_SHOP.entity_id, [("tea", 1)])


async def credit_limit_refusal(context: FlowContext) -> None:
    """A member over its credit limit is refused, and nothing is recorded anywhere."""
    network = context.network
    member = members_of("agency-1")[1]
    ca = network.ca.read_bytes()
    async with AgencyClient(
        network.node("agency-1").member_address, ca, trace_id=context.trace_id
    ) as client:
        await client.login(member.member_id, member.password)
        value = (await client.anonymous_user_id("shop-2")).anonymous_user_id.value
    async with ShopClient(
        network.node("shop-2").member_address, ca, trace_id=context.trace_id
    ) as shop:
        refused = await expect_refusal(
            shop.place_order(value, [("kettle", 1)]), "CREDIT_LIMIT_EXCEEDED"
        )
    context.note(f"{member.member_id} (limit {member.credit_limit_minor / 100:.2f}): {refused}")


FLOWS = [
    DemoFlow(
        "Purchase with directory discovery at shop-1 (claim 1, steps 1-11)",
        directory_purchase,
        what=(
            "A member buys at shop-1. The shop never learns who the member is: it finds the "
            "member's agency by asking the institution's directory, the agency approves the "
            "credit, and the institution verifies and records the sale."
        ),
    ),
    DemoFlow(
        "Purchase with push discovery at shop-2 (claim 10, steps 1-11)",
        push_purchase,
        what=(
            "The same purchase at shop-2, which learns where every agency is from updates the "
            "institution pushes to it, so it does not ask per purchase."
        ),
    ),
    DemoFlow(
        "Purchase with cache discovery at shop-4 (claim 19, steps 1-11)",
        cache_purchase,
        what=(
            "A shop that keeps its own copy of the agencies' routing data, refreshed from the "
            "agencies, joins and sells."
        ),
    ),
    DemoFlow(
        "Purchase over the credit limit: refused, nothing recorded",
        credit_limit_refusal,
        what=(
            "A member with a small credit limit tries to buy too much: the agency refuses, and no "
            "node keeps a sale."
        ),
    ),
]
