"""Helpers for end-to-end cancellation tests: cancelling as the shop, billing runs, and the
four records a cancellation must leave."""

from __future__ import annotations

from typing import Any

from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.network.local import LocalNetwork
from tests.e2e.purchase_support import records, request_id, table_rows


async def cancel_by_shop(
    network: LocalNetwork, shop: str, order_number: str, request: str = ""
) -> retail_pb2.CancelOrderResponse:
    async with network.admin_channel(network.node(shop).address) as channel:
        response: retail_pb2.CancelOrderResponse = await retail_pb2_grpc.RetailAdminServiceStub(
            channel
        ).CancelOrder(
            retail_pb2.CancelOrderRequest(
                request_id=request or request_id(), order_number=order_number, reason="test"
            ),
            timeout=30,
        )
        return response


async def run_billing(network: LocalNetwork, agency: str) -> settlement_pb2.RunBillingResponse:
    async with network.admin_channel(network.node(agency).address) as channel:
        response: settlement_pb2.RunBillingResponse = (
            await settlement_pb2_grpc.SettlementAdminServiceStub(channel).RunBilling(
                settlement_pb2.RunBillingRequest(request_id=request_id()), timeout=30
            )
        )
        return response


async def cancellation_record(
    network: LocalNetwork, order_number: str
) -> verification_pb2.CancellationRecord:
    async with network.admin_channel(network.node("verification").address) as channel:
        response = await verification_pb2_grpc.VerificationServiceStub(
            channel
        ).GetCancellationRecord(
            verification_pb2.GetCancellationRecordRequest(order_number=order_number), timeout=10
        )
        return response.cancellation_record


async def assert_cancelled_everywhere(
    network: LocalNetwork, shop: str, order_number: str, procedure: str, decision: int, amount: int
) -> dict[str, Any]:
    """The four places agree the order is cancelled, with the decision and the amount."""
    found = await records(network, order_number, shop, "agency-1")
    verification = await cancellation_record(network, order_number)
    sales, order, billing, record = (
        found["sales"],
        found["order"],
        found["billing"],
        found["record"],
    )
    assert sales.status == retail_pb2.ORDER_STATUS_CANCELLED
    assert sales.cancel_process_result.decision == decision
    assert sales.cancel_process_result.amount.amount_minor == amount
    assert sales.HasField("cancel_verification") == (procedure == "verified")
    expected_state = (
        settlement_pb2.BILLING_STATE_BILLING_STOPPED
        if decision == types_pb2.CANCEL_DECISION_STOPPED_BILLING
        else settlement_pb2.BILLING_STATE_CREDITED_BACK
    )
    assert billing.billing_state == order.billing_state == expected_state
    assert order.cancel_process_result.cancel_request_id == (
        sales.cancel_process_result.cancel_request_id
    )
    assert verification.cancel_process_notice.order_number == order_number
    assert verification.cancel_request_notice.order_number == order_number
    assert verification.HasField("cancel_verification") == (procedure == "verified")
    assert record.HasField("cancelled_at")
    assert record.cancel_decision == decision
    assert 0 < record.cancelled_amount.amount_minor == amount <= record.amount.amount_minor
    return found


def cancellation_notices(network: LocalNetwork, order_number: str) -> list[dict[str, Any]]:
    return [
        row
        for row in table_rows(network, "agency-1")["member_notice"]
        if row["order_number"] == order_number and row["kind"] == "CANCELLATION_PROCESSED"
    ]
