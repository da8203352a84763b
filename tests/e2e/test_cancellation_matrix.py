"""Cancellation under every discovery variant and both procedures, end to end.

Claims 2 and 3 add cancellation to claim 1 (directory discovery), claims 11 and 12 to claim
10 (push), claims 20 and 21 to claim 19 (cache). One shop per pair runs it: the member
cancels one order before any billing run (billing stopped), the shop's operator cancels
another after one (credited back), and all four records agree each time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from suretynet.retail.v1 import retail_pb2
from suretynet.type.v1 import types_pb2

from nodes.member.client import ShopClient
from nodes.network.flows.purchase import wait_for_cached_agency
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec
from tests.e2e.cancel_support import (
    assert_cancelled_everywhere,
    cancel_by_shop,
    cancellation_record,
    run_billing,
)
from tests.e2e.purchase_support import buy

# claim numbers by (discovery variant, procedure)
CLAIMS = {
    ("directory", "notified"): 2,
    ("directory", "verified"): 3,
    ("push", "notified"): 11,
    ("push", "verified"): 12,
    ("cache", "notified"): 20,
    ("cache", "verified"): 21,
}


def shop_of(variant: str, procedure: str) -> str:
    return f"shop-{variant}-{procedure}"


MATRIX_TOPOLOGY: tuple[NodeSpec, ...] = (
    *(spec for spec in DEFAULT_TOPOLOGY if spec.role in ("approval", "verification")),
    *(spec for spec in DEFAULT_TOPOLOGY if spec.entity_id == "agency-1"),
    *(
        NodeSpec(
            "retail",
            shop_of(variant, procedure),
            f"Shop ({variant}, {procedure})",
            {
                "discovery": variant,
                "cancel_procedure": procedure,
                "cache_refresh_interval_s": 1,
                "cache_max_staleness_s": 60,
            },
            True,
        )
        for variant, procedure in CLAIMS
    ),
)


@pytest.fixture(scope="module")
def matrix_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    network = network_factory(MATRIX_TOPOLOGY)

    async def ready() -> None:
        for variant, procedure in CLAIMS:
            if variant != "directory":
                await wait_for_cached_agency(network, shop_of(variant, procedure), "agency-1")

    asyncio.run(ready())
    return network


@pytest.mark.parametrize(
    ("variant", "procedure"), list(CLAIMS), ids=[f"claim-{n}" for n in CLAIMS.values()]
)
def test_cancellation_runs_end_to_end_under_every_variant_and_procedure(
    matrix_network: LocalNetwork, variant: str, procedure: str
):
    """Claims 2-3, 11-12, 20-21: the member cancels before billing (stopped), the shop
    after billing (credited back); sales record, billing, verification's record and
    approval's record agree, and only the verified procedure carries a cancel verification."""
    network, shop = matrix_network, shop_of(variant, procedure)

    async def scenario() -> None:
        unbilled = await buy(network, "agency-1", "alice", shop, [("mug", 1)])
        assert unbilled.order.status == retail_pb2.ORDER_STATUS_COMPLETED
        async with ShopClient(network.node(shop).member_address, network.ca.read_bytes()) as client:
            answer = await client.request_cancellation(
                unbilled.order.order_number, unbilled.anonymous_user_id, "changed my mind"
            )
        assert answer.cancel_process_result.decision == types_pb2.CANCEL_DECISION_STOPPED_BILLING
        assert answer.HasField("cancel_verification") == (procedure == "verified")
        await assert_cancelled_everywhere(
            network,
            shop,
            unbilled.order.order_number,
            procedure,
            types_pb2.CANCEL_DECISION_STOPPED_BILLING,
            2_500,
        )
        record = await cancellation_record(network, unbilled.order.order_number)
        assert record.cancel_request_notice.requested_by == types_pb2.CANCEL_REQUESTER_MEMBER
        assert record.cancel_request_notice.procedure == (
            types_pb2.CANCEL_PROCEDURE_VERIFIED
            if procedure == "verified"
            else types_pb2.CANCEL_PROCEDURE_NOTIFIED
        )

        billed = await buy(network, "agency-1", "alice", shop, [("kettle", 1)])
        assert (
            billed.order.order_number
            in (await run_billing(network, "agency-1")).billed_order_numbers
        )
        by_shop = await cancel_by_shop(network, shop, billed.order.order_number)
        assert by_shop.cancel_process_result.decision == types_pb2.CANCEL_DECISION_CREDITED_BACK
        await assert_cancelled_everywhere(
            network,
            shop,
            billed.order.order_number,
            procedure,
            types_pb2.CANCEL_DECISION_CREDITED_BACK,
            7_900,
        )
        record = await cancellation_record(network, billed.order.order_number)
        assert record.cancel_request_notice.requested_by == (
            types_pb2.CANCEL_REQUESTER_RETAIL_ENTITY
        )

    asyncio.run(scenario())
