"""Cancellation end to end (seed 001 claims 2-3, 11-12, 20-21), every node its own process.

shop-1 runs the NOTIFIED procedure (claims 2, 11, 20), shop-2 the VERIFIED one (claims 3,
12, 21). A cancelled order is cancelled in all four places: the shop's sales record, the
agency's billing, verification's record and approval's transaction record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import tls
from nodes.member.client import ShopClient
from nodes.network.local import LocalNetwork
from tests.e2e.cancel_support import (
    assert_cancelled_everywhere,
    cancel_by_shop,
    cancellation_notices,
    cancellation_record,
    run_billing,
)
from tests.e2e.purchase_support import (
    PROCEDURE_SHOPS,
    buy,
    records,
    request_id,
    start_purchase_network,
    table_rows,
)
from tests.support import refusal

PROCEDURES = ["notified", "verified"]


@pytest.fixture(scope="module")
def cancel_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    return start_purchase_network(network_factory)


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_cancel_before_billing_stops_the_billing(cancel_network: LocalNetwork, procedure: str):
    """The shop cancels a not yet billed order: billing stopped, in all four places."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("mug", 1)])
        answer = await cancel_by_shop(network, shop, purchase.order.order_number)
        assert answer.order.status == retail_pb2.ORDER_STATUS_CANCELLED
        assert answer.cancel_process_result.decision == types_pb2.CANCEL_DECISION_STOPPED_BILLING
        assert answer.HasField("cancel_verification") == (procedure == "verified")
        await assert_cancelled_everywhere(
            network,
            shop,
            purchase.order.order_number,
            procedure,
            types_pb2.CANCEL_DECISION_STOPPED_BILLING,
            2_500,
        )
        assert len(cancellation_notices(network, purchase.order.order_number)) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_cancel_after_billing_credits_it_back(cancel_network: LocalNetwork, procedure: str):
    """The member cancels a billed order: the amount is credited back, never more."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("kettle", 1)])
        billed = await run_billing(network, "agency-1")
        assert purchase.order.order_number in billed.billed_order_numbers
        async with ShopClient(network.node(shop).member_address, network.ca.read_bytes()) as client:
            answer = await client.request_cancellation(
                purchase.order.order_number, purchase.anonymous_user_id, "changed my mind"
            )
        assert answer.cancel_process_result.decision == types_pb2.CANCEL_DECISION_CREDITED_BACK
        await assert_cancelled_everywhere(
            network,
            shop,
            purchase.order.order_number,
            procedure,
            types_pb2.CANCEL_DECISION_CREDITED_BACK,
            7_900,
        )
        notices = cancellation_notices(network, purchase.order.order_number)
        assert [notice["amount_minor"] for notice in notices] == [7_900]
        record = await cancellation_record(network, purchase.order.order_number)
        assert record.cancel_request_notice.requested_by == types_pb2.CANCEL_REQUESTER_MEMBER

    asyncio.run(scenario())


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_cancelling_twice_gives_the_same_result_and_no_second_credit(
    cancel_network: LocalNetwork, procedure: str
):
    """A second cancellation of a billed order (another request_id) answers the first's
    result; the agency keeps one cancellation and one credit notice."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("tea", 3)])
        await run_billing(network, "agency-1")
        first = await cancel_by_shop(network, shop, purchase.order.order_number)
        second = await cancel_by_shop(network, shop, purchase.order.order_number)
        assert second.cancel_process_result == first.cancel_process_result
        assert second.cancel_verification == first.cancel_verification
        assert len(cancellation_notices(network, purchase.order.order_number)) == 1
        rows = [
            row
            for row in table_rows(network, "agency-1")["cancellation"]
            if row["order_number"] == purchase.order.order_number
        ]
        assert len(rows) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_cancelling_an_unknown_order_is_refused(cancel_network: LocalNetwork, procedure: str):
    """No such order, or not the member's (another anonymous ID): ORDER_NOT_FOUND."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]

    async def scenario() -> None:
        refused = await refusal(cancel_by_shop(network, shop, "ON-00000000000000000000-none"))
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")
        purchase = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
        async with ShopClient(network.node(shop).member_address, network.ca.read_bytes()) as client:
            stranger = await refusal(
                client.request_cancellation(purchase.order.order_number, "41110000000000000000")
            )
        assert (stranger.code, stranger.reason) == (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND")

    asyncio.run(scenario())


def _as_node(network: LocalNetwork, entity: str) -> grpc.ChannelCredentials:
    node = network.node(entity)
    return tls.client_credentials(
        network.ca.read_bytes(), node.cert.read_bytes(), node.key.read_bytes()
    )


def _notice(
    order: retail_pb2.ShopOrder, shop: str, procedure: int
) -> types_pb2.CancelRequestNotice:
    return types_pb2.CancelRequestNotice(
        cancel_request_id=f"CR-test-{request_id()[:12]}",
        order_number=order.order_number,
        retail_entity_id=shop,
        settlement_agency_id=order.settlement_agency_id,
        requested_by=types_pb2.CANCEL_REQUESTER_RETAIL_ENTITY,
        procedure=procedure,
    )


async def notify_as(
    network: LocalNetwork, shop: str, notice: types_pb2.CancelRequestNotice
) -> settlement_pb2.NotifyCancelRequestResponse:
    """Sends the agency a cancel request notice as ``shop`` (its own certificate)."""
    async with grpc.aio.secure_channel(
        network.node("agency-1").address, _as_node(network, shop)
    ) as channel:
        response: settlement_pb2.NotifyCancelRequestResponse = (
            await settlement_pb2_grpc.BillingServiceStub(channel).NotifyCancelRequest(
                settlement_pb2.NotifyCancelRequestRequest(
                    request_id=request_id(),
                    cancel_request_notice=notice,
                    retail_entity=types_pb2.RetailEntityIdentification(retail_entity_id=shop),
                ),
                timeout=10,
            )
        )
        return response


async def submit_request_as(
    network: LocalNetwork, shop: str, notice: types_pb2.CancelRequestNotice
) -> verification_pb2.SubmitCancelRequestNoticeResponse:
    """Sends verification a cancel request notice as ``shop``."""
    async with grpc.aio.secure_channel(
        network.node("verification").address, _as_node(network, shop)
    ) as channel:
        response: verification_pb2.SubmitCancelRequestNoticeResponse = (
            await verification_pb2_grpc.VerificationServiceStub(channel).SubmitCancelRequestNotice(
                verification_pb2.SubmitCancelRequestNoticeRequest(
                    request_id=request_id(), cancel_request_notice=notice
                ),
                timeout=10,
            )
        )
        return response


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_a_shop_cancelling_another_shops_order_is_denied(
    cancel_network: LocalNetwork, procedure: str
):
    """The other shop, with its own certificate, asks the agency and verification to cancel
    this shop's order: PERMISSION_DENIED / NOT_OWNER, and the order stays as it was."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]
    other = "shop-2" if shop == "shop-1" else "shop-1"
    procedure_value = (
        types_pb2.CANCEL_PROCEDURE_VERIFIED
        if procedure == "verified"
        else types_pb2.CANCEL_PROCEDURE_NOTIFIED
    )

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
        notice = _notice(purchase.order, other, procedure_value)
        at_agency = await refusal(notify_as(network, other, notice))
        at_verification = await refusal(submit_request_as(network, other, notice))
        for refused in (at_agency, at_verification):
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "NOT_OWNER",
            )
        at_other_shop = await refusal(cancel_by_shop(network, other, purchase.order.order_number))
        assert at_other_shop.reason == "ORDER_NOT_FOUND"
        found = await records(network, purchase.order.order_number, shop, "agency-1")
        assert found["sales"].status == retail_pb2.ORDER_STATUS_COMPLETED
        assert found["billing"].billing_state == settlement_pb2.BILLING_STATE_NOT_YET_BILLED

    asyncio.run(scenario())


def test_an_order_number_mismatch_is_refused_and_cancels_nothing(cancel_network: LocalNetwork):
    """Claim 3: verification holds a cancel request notice for order A; the agency's process
    notice under the same cancellation names order B. CANCEL_ORDER_NUMBER_MISMATCH, and
    neither order is cancelled anywhere."""
    network, shop = cancel_network, PROCEDURE_SHOPS["verified"]

    async def scenario() -> None:
        first = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
        second = await buy(network, "agency-1", "alice", shop, [("mug", 1)])
        request_notice = _notice(first.order, shop, types_pb2.CANCEL_PROCEDURE_VERIFIED)
        other_notice = types_pb2.CancelRequestNotice()
        other_notice.CopyFrom(request_notice)
        other_notice.order_number = second.order.order_number
        await submit_request_as(network, shop, request_notice)
        refused = await refusal(notify_as(network, shop, other_notice))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "CANCEL_ORDER_NUMBER_MISMATCH",
        )
        for purchase in (first, second):
            number = purchase.order.order_number
            found = await records(network, number, shop, "agency-1")
            assert found["sales"].status == retail_pb2.ORDER_STATUS_COMPLETED
            assert found["billing"].billing_state == settlement_pb2.BILLING_STATE_NOT_YET_BILLED
            assert not found["order"].HasField("cancel_process_result")
            assert not found["record"].HasField("cancelled_at")
            verification = await cancellation_record(network, number)
            assert not verification.HasField("cancel_process_notice")
            assert not verification.HasField("cancel_verification")
            assert cancellation_notices(network, number) == []
        # The order can still be cancelled properly afterwards.
        answer = await cancel_by_shop(network, shop, first.order.order_number)
        assert answer.order.status == retail_pb2.ORDER_STATUS_CANCELLED

    asyncio.run(scenario())


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_racing_cancellations_end_in_one_cancellation_and_one_credit(
    cancel_network: LocalNetwork, procedure: str
):
    """The member and the shop cancel the same billed order at the same moment."""
    network, shop = cancel_network, PROCEDURE_SHOPS[procedure]

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("kettle", 1)])
        await run_billing(network, "agency-1")
        async with ShopClient(network.node(shop).member_address, network.ca.read_bytes()) as client:
            by_member, by_shop = await asyncio.gather(
                client.request_cancellation(
                    purchase.order.order_number, purchase.anonymous_user_id
                ),
                cancel_by_shop(network, shop, purchase.order.order_number),
            )
        assert by_member.cancel_process_result == by_shop.cancel_process_result
        notices = cancellation_notices(network, purchase.order.order_number)
        assert [notice["amount_minor"] for notice in notices] == [7_900]
        await assert_cancelled_everywhere(
            network,
            shop,
            purchase.order.order_number,
            procedure,
            types_pb2.CANCEL_DECISION_CREDITED_BACK,
            7_900,
        )

    asyncio.run(scenario())


def test_approval_refuses_a_cancellation_verification_does_not_hold(cancel_network: LocalNetwork):
    """A shop cannot mark approval's record cancelled without verification's proof."""
    network, shop = cancel_network, PROCEDURE_SHOPS["notified"]

    async def scenario() -> None:
        purchase = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
        license_key = table_rows(network, shop)["node_credential"][0]["license_key"]
        async with grpc.aio.secure_channel(
            network.node("institution").address, _as_node(network, shop)
        ) as channel:
            refused = await refusal(
                approval_pb2_grpc.TransactionServiceStub(channel).RecordTransactionCancellation(
                    approval_pb2.RecordTransactionCancellationRequest(
                        request_id=request_id(),
                        order_number=purchase.order.order_number,
                        cancel_request_id="CR-made-up",
                    ),
                    metadata=[("x-suretynet-license-key", license_key)],
                    timeout=10,
                )
            )
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "CANCEL_REQUEST_NOT_FOUND",
        )

    asyncio.run(scenario())
