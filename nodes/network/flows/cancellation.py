"""Demo flows for cancellation (seed 001 claims 2-3, 11-12, 20-21): one per procedure.

Each flow first buys an order (under its own trace, so it is not printed), then cancels it;
the printed sequence is the cancellation only.
"""

from __future__ import annotations

from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo import DemoFlow, FlowContext
from nodes.network.demo_data import members_of
from nodes.network.flows.purchase import buy_order


def _describe(context: FlowContext, result: types_pb2.CancelProcessResult) -> None:
    context.note(
        f"cancel process result: {types_pb2.CancelDecision.Name(result.decision)}, "
        f"{result.amount.amount_minor / 100:.2f} {result.amount.currency_code}"
    )


async def member_cancels_before_billing(context: FlowContext) -> None:
    """shop-1 runs NOTIFIED: the member cancels a not yet billed order; billing stops."""
    network = context.network
    agency = "agency-1"
    member = members_of(agency)[0]
    order, value = await buy_order(context, agency, "shop-1", [("mug", 1)])
    context.note(f"order {order.order_number} bought (its purchase is not printed)")
    ca = network.ca.read_bytes()
    async with ShopClient(
        network.node("shop-1").member_address, ca, trace_id=context.trace_id
    ) as shop:
        answer = await shop.request_cancellation(order.order_number, value, "ordered twice")
    _describe(context, answer.cancel_process_result)
    async with AgencyClient(
        network.node(agency).member_address, ca, trace_id=context.trace_id
    ) as client:
        await client.login(member.member_id, member.password)
        notices = await client.member_notices(page_size=1)
    if notices:
        context.note(f"member notice: {notices[0].message}")


async def shop_cancels_after_billing(context: FlowContext) -> None:
    """shop-2 runs VERIFIED: after a billing run the shop cancels; the agency credits back
    once verification matched the order numbers and issued the cancel verification."""
    network = context.network
    order, _ = await buy_order(context, "agency-2", "shop-2", [("kettle", 1)])
    context.note(f"order {order.order_number} bought (its purchase is not printed)")
    metadata = context.metadata()
    async with network.admin_channel(network.node("agency-2").address) as channel:
        billed = await settlement_pb2_grpc.SettlementAdminServiceStub(channel).RunBilling(
            settlement_pb2.RunBillingRequest(request_id=f"{context.trace_id}-billing"),
            metadata=metadata,
            timeout=30,
        )
    context.note(f"billing run at agency-2 billed {billed.billed_order_count} order(s)")
    async with network.admin_channel(network.node("shop-2").address) as channel:
        answer = await retail_pb2_grpc.RetailAdminServiceStub(channel).CancelOrder(
            retail_pb2.CancelOrderRequest(
                request_id=f"{context.trace_id}-cancel",
                order_number=order.order_number,
                reason="out of stock",
            ),
            metadata=metadata,
            timeout=30,
        )
    _describe(context, answer.cancel_process_result)
    context.note(f"cancel verification {answer.cancel_verification.cancel_verification_id}")


FLOWS = [
    DemoFlow(
        "Cancellation by the member before billing, NOTIFIED procedure (claims 2, 11, 20)",
        member_cancels_before_billing,
        what=(
            "The member cancels an order before it was billed: the agency stops the bill, and the "
            "shop, the agency, verification and the institution all record the cancellation."
        ),
    ),
    DemoFlow(
        "Cancellation by the shop after billing, VERIFIED procedure (claims 3, 12, 21)",
        shop_cancels_after_billing,
        what=(
            "The shop cancels an order that was already billed: the agency credits it back, and "
            "verification checks the cancellation before the shop is told."
        ),
    ),
]
