"""Nothing lost, nothing twice: the purchase saga under retries, races, frozen peers and expiry.

Each test drives real node processes and freezes peers with SIGSTOP, as an operator's bad
day would; each names the defect of the old code that it catches (docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import tls
from nodes.common.status import RemoteError, decode_rpc_error
from nodes.member.client import ShopClient
from nodes.network.flows.purchase import wait_for_cached_agency
from nodes.network.local import (
    DEFAULT_TOPOLOGY,
    LocalNetwork,
    NodeSpec,
    choose_port,
    relaunch,
    wait_ready,
)
from tests.e2e.purchase_support import (
    anonymous_id,
    frozen,
    request_id,
    set_status,
    table_rows,
)
from tests.support import eventually

# The shop every test buys at (push discovery), one whose own resumer never runs (so that
# only the agency can finish its part), and one whose orders live two seconds.
SHOP = "shop-2"
QUIET_SHOP = "shop-quiet"
BRIEF_SHOP = "shop-brief"
TOPOLOGY: tuple[NodeSpec, ...] = (
    *(spec for spec in DEFAULT_TOPOLOGY if spec.role in ("approval", "verification", "settlement")),
    NodeSpec(
        "retail", SHOP, "Shop Two", {"discovery": "push", "purchase_resume_interval_s": 1}, True
    ),
    NodeSpec(
        "retail",
        QUIET_SHOP,
        "Quiet Shop",
        {"discovery": "push", "purchase_resume_interval_s": 3600},
        True,
    ),
    NodeSpec(
        "retail",
        BRIEF_SHOP,
        "Brief Shop",
        {"discovery": "push", "purchase_resume_interval_s": 1, "order_lifetime_s": 2},
        True,
    ),
)


@pytest.fixture(scope="module")
def network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    network = network_factory(TOPOLOGY)

    async def ready() -> None:
        for shop in (SHOP, QUIET_SHOP, BRIEF_SHOP):
            await wait_for_cached_agency(network, shop, "agency-1")

    asyncio.run(ready())
    return network


def place_request(anonymous_user_id: str, item: str = "tea", rid: str = "") -> Any:
    return retail_pb2.PlaceOrderRequest(
        request_id=rid or request_id(),
        anonymous_user_id=anonymous_user_id,
        items=[retail_pb2.OrderItem(catalog_item_id=item, quantity=1)],
        payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
    )


async def place(network: LocalNetwork, shop: str, request: Any) -> Any:
    """PlaceOrder as a member's client sends it; the answer, or the decoded refusal."""
    credentials = tls.client_credentials(network.ca.read_bytes())
    async with grpc.aio.secure_channel(network.node(shop).member_address, credentials) as channel:
        try:
            answer = await retail_pb2_grpc.ShopServiceStub(channel).PlaceOrder(request, timeout=30)
        except grpc.RpcError as error:
            return decode_rpc_error(error)
        return answer.order


async def settled(network: LocalNetwork, shop: str, request: Any) -> Any:
    """PlaceOrder retried as a client must while another driver holds the order
    (ABORTED / REQUEST_IN_PROGRESS); the first other answer."""
    answer = await place(network, shop, request)
    for _ in range(100):
        if not (isinstance(answer, RemoteError) and answer.reason == "REQUEST_IN_PROGRESS"):
            break
        await asyncio.sleep(0.1)
        answer = await place(network, shop, request)
    return answer


def agency_orders(network: LocalNetwork, agency: str, member: str) -> list[dict[str, Any]]:
    return [o for o in table_rows(network, agency)["settlement_order"] if o["member_id"] == member]


def shop_order(network: LocalNetwork, shop: str, order_number: str) -> dict[str, Any]:
    rows = table_rows(network, shop)["shop_order"]
    return next(row for row in rows if row["order_number"] == order_number)


def number_for(network: LocalNetwork, shop: str, rid: str) -> str:
    """The order number the shop recorded for a request_id (read from its database)."""
    rows = table_rows(network, shop)["shop_order"]
    return str(next(row["order_number"] for row in rows if row["request_id"] == rid))


def order_number_of(answer: Any) -> str:
    if isinstance(answer, RemoteError):
        return answer.metadata.get("order_number", "")
    return str(answer.order_number)


def test_a_retry_refused_midway_never_bills_the_member_twice(network: LocalNetwork):
    """Defect 1: verification frozen, the shop suspended, then reinstated: every retry of one
    request_id names one order number, and the agency holds one order for the purchase.

    The old code discarded the shop's order on the suspended retry (the agency re-ran its
    checks before finding its own order), then made and billed a second order."""

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", SHOP)
        before = {o["order_number"] for o in agency_orders(network, "agency-1", "alice")}
        request = place_request(value, "kettle")
        async with frozen(network, "verification"):
            first = await place(network, SHOP, request)
        assert isinstance(first, RemoteError)
        assert first.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        number = number_for(network, SHOP, request.request_id)
        await set_status(network, SHOP, types_pb2.ENTITY_STATUS_SUSPENDED)
        try:
            second = await place(network, SHOP, request)
        finally:
            await set_status(network, SHOP, types_pb2.ENTITY_STATUS_ACTIVE)
        third = await settled(network, SHOP, request)
        assert {order_number_of(first), order_number_of(second), order_number_of(third)} == {number}
        new = [
            o
            for o in agency_orders(network, "agency-1", "alice")
            if o["order_number"] not in before
        ]
        assert [o["order_number"] for o in new] == [number]
        # The agency answered from its record: the purchase completed, once.
        assert not isinstance(third, RemoteError)
        assert third.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert shop_order(network, SHOP, number)["status"] == "COMPLETED"

    asyncio.run(scenario())


def test_concurrent_duplicates_get_the_first_answer_or_request_in_progress(
    network: LocalNetwork,
):
    """Defect 2: twenty PlaceOrder calls with one request_id at once. Each gets the order or
    ABORTED / REQUEST_IN_PROGRESS, never INTERNAL; one order exists at the shop and the
    agency. The old code let sixteen of them fail with INTERNAL."""

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", SHOP)
        request = place_request(value)
        answers = await asyncio.gather(*(place(network, SHOP, request) for _ in range(20)))
        codes = {
            answer.code if isinstance(answer, RemoteError) else grpc.StatusCode.OK
            for answer in answers
        }
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.ABORTED}, codes
        assert {a.reason for a in answers if isinstance(a, RemoteError)} <= {"REQUEST_IN_PROGRESS"}
        numbers = {order_number_of(answer) for answer in answers}
        assert len(numbers) == 1
        number = numbers.pop()
        final = await settled(network, SHOP, request)
        assert order_number_of(final) == number
        shop_rows = table_rows(network, SHOP)["shop_order"]
        assert [r["order_number"] for r in shop_rows if r["request_id"] == request.request_id] == [
            number
        ]

    asyncio.run(scenario())


def test_concurrent_duplicates_of_admin_and_member_calls_never_fail_internally(
    network: LocalNetwork,
):
    """Defect 2, every idempotent RPC: concurrent duplicates of an agency's EnrollMember and
    SetCreditLimit, and of a member's IssueAnonymousUserId, get one answer or ABORTED."""

    async def duplicates(call: Callable[[], Any]) -> list[Any]:
        async def one() -> Any:
            try:
                return await call()
            except grpc.RpcError as error:
                return decode_rpc_error(error)

        return list(await asyncio.gather(*(one() for _ in range(12))))

    def check(answers: list[Any]) -> None:
        refusals = [a for a in answers if isinstance(a, RemoteError)]
        assert {(r.code, r.reason) for r in refusals} <= {
            (grpc.StatusCode.ABORTED, "REQUEST_IN_PROGRESS")
        }, refusals
        firsts = {a.SerializeToString(deterministic=True) for a in answers if a not in refusals}
        assert len(firsts) == 1, "every answer is the first answer"

    async def scenario() -> None:
        member_id = "dup-" + request_id()[:8]
        async with network.admin_channel(network.node("agency-1").address) as channel:
            admin = settlement_pb2_grpc.SettlementAdminServiceStub(channel)
            enroll = settlement_pb2.EnrollMemberRequest(
                request_id=request_id(),
                member_id=member_id,
                display_name="Dup",
                password="dup-password-1",
                credit_limit=types_pb2.Money(amount_minor=10_000, currency_code="USD"),
            )
            check(await duplicates(lambda: admin.EnrollMember(enroll, timeout=30)))
            limit = settlement_pb2.SetCreditLimitRequest(
                request_id=request_id(),
                member_id=member_id,
                credit_limit=types_pb2.Money(amount_minor=20_000, currency_code="USD"),
            )
            check(await duplicates(lambda: admin.SetCreditLimit(limit, timeout=30)))

    asyncio.run(scenario())


def test_a_pending_answer_names_its_order_and_the_order_finishes_by_itself(
    network: LocalNetwork,
):
    """Defect 8: a member whose purchase met a frozen agency is told "pending" with the order
    number (never a bare failure), can read the order with GetOrder, and the shop's resumer
    completes it without another call from the member."""

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", SHOP)
        async with frozen(network, "agency-1"):
            pending = await place(network, SHOP, place_request(value))
        assert isinstance(pending, RemoteError)
        assert pending.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert pending.metadata["order_status"] == "PENDING"
        number = pending.metadata["order_number"]
        address = network.node(SHOP).member_address
        async with ShopClient(address, network.ca.read_bytes()) as client:

            async def completed() -> bool:
                order = await client.order(number, value)
                return bool(order.status == retail_pb2.ORDER_STATUS_COMPLETED)

            await eventually(completed, timeout_s=60)

    asyncio.run(scenario())


def test_the_agency_files_its_own_report_without_the_shop(network: LocalNetwork):
    """Defect 7: verification is frozen while the agency approves an order; the shop never
    calls again (its resumer is off). The agency's own resumer files the report once
    verification is back. The old agency relied on the shop's retry."""

    async def scenario() -> str:
        value, _ = await anonymous_id(network, "agency-1", "alice", QUIET_SHOP)
        request = place_request(value)
        async with frozen(network, "verification"):
            pending = await place(network, QUIET_SHOP, request)
        assert isinstance(pending, RemoteError)
        number = number_for(network, QUIET_SHOP, request.request_id)

        async def reported() -> bool:
            reports = table_rows(network, "verification")["transaction_report"]
            agency = [o for o in agency_orders(network, "agency-1", "alice")]
            return any(r["order_number"] == number for r in reports) and any(
                o["order_number"] == number and o["reported_at"] for o in agency
            )

        await eventually(reported, timeout_s=60)
        assert shop_order(network, QUIET_SHOP, number)["status"] == "PENDING"
        return number

    number = asyncio.run(scenario())
    # The shop's operator sees the stuck order, its state and its age.
    listed = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "flows", "--network",
         str(network.data_dir / "network.json"), "--entity", QUIET_SHOP, "--open", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    flows = json.loads(listed.stdout)["flows"]
    assert [(f["key"], f["state"]) for f in flows if f["key"] == number] == [(number, "PENDING")]
    assert all(f["age_s"] >= 0 for f in flows)


def test_an_order_past_its_lifetime_is_voided_everywhere(network: LocalNetwork):
    """Defect 6: an order stuck at a frozen agency outlives its two-second lifetime. The
    shop's janitor voids it: approval and the agency record the void, the agency releases
    the member's credit (if it held the order), and a retry repeats ORDER_EXPIRED.
    The old shop kept it PENDING forever, with the member's credit held."""

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", BRIEF_SHOP)
        request = place_request(value, "mug")
        async with frozen(network, "agency-1"):
            pending = await place(network, BRIEF_SHOP, request)
            assert isinstance(pending, RemoteError)
            number = number_for(network, BRIEF_SHOP, request.request_id)

            async def voiding() -> bool:
                return bool(shop_order(network, BRIEF_SHOP, number)["status"] == "VOIDING")

            await eventually(voiding, timeout_s=60)

        async def voided() -> bool:
            return bool(shop_order(network, BRIEF_SHOP, number)["status"] == "VOIDED")

        await eventually(voided, timeout_s=60)
        approval_voids = table_rows(network, "institution")["order_void"]
        assert [v["reason"] for v in approval_voids if v["order_number"] == number] == [
            "ORDER_EXPIRED"
        ]
        agency_voids = table_rows(network, "agency-1")["order_void"]
        assert [v["retail_entity_id"] for v in agency_voids if v["order_number"] == number] == [
            BRIEF_SHOP
        ]
        held = [
            o for o in agency_orders(network, "agency-1", "alice") if o["order_number"] == number
        ]
        assert all(o["billing_state"] == "VOIDED" for o in held)
        again = await place(network, BRIEF_SHOP, request)
        assert isinstance(again, RemoteError)
        assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_EXPIRED")
        assert again.metadata["order_number"] == number

    asyncio.run(scenario())


def test_an_order_stuck_at_a_moved_agency_follows_it_to_its_new_address(network: LocalNetwork):
    """Issue 15: an order waits at a frozen agency; the agency dies and comes back on
    another port, and announces its new address itself. The shop's resumer looks the route
    up afresh and finishes the order there. The old shop kept calling the dead address."""

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-2", "carol", SHOP)
        request = place_request(value)
        agency = network.node("agency-2")
        os.kill(agency.process.pid, signal.SIGSTOP)
        try:
            pending = await place(network, SHOP, request)
        finally:
            agency.process.kill()
            agency.process.wait()
        assert isinstance(pending, RemoteError)
        number = number_for(network, SHOP, request.request_id)
        old_address = shop_order(network, SHOP, number)["settlement_address"]
        assert old_address == agency.address
        moved = f"127.0.0.1:{choose_port('127.0.0.1')}"
        config = agency.directory / "node.toml"
        config.write_text(
            "\n".join(
                f"listen_address = {json.dumps(moved)}"
                if line.startswith("listen_address = ")
                else line
                for line in config.read_text().splitlines()
            )
            + "\n"
        )
        relaunch(network, agency)
        await wait_ready(network, agency)
        assert agency.address == moved

        async def completed() -> bool:
            return bool(shop_order(network, SHOP, number)["status"] == "COMPLETED")

        await eventually(completed, timeout_s=60)
        assert shop_order(network, SHOP, number)["settlement_address"] == moved

    asyncio.run(scenario())
