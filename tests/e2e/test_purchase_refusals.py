"""Purchase refusals end to end: each has its reason code and leaves no open records.

The shop keeps every order it ever started (a request_id maps to one order number
forever), in a final state: DECLINED before the billing search left it, VOIDED after. No
other node holds an open order, a transaction report or a transaction record for it.

Also the privacy guarantee: no table of a shop's database holds a member's ID, name or
credentials, whatever the shop's discovery variant.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import tls
from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from nodes.common.convert import money
from nodes.common.node import read_license_key
from nodes.common.status import decode_rpc_error
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo_data import DEMO_MEMBERS, members_of
from nodes.network.local import LocalNetwork, restart_node, stop_node
from tests.e2e.purchase_support import (
    SHORT_ID_AGENCY,
    anonymous_id,
    buy,
    count,
    frozen,
    password_of,
    request_id,
    set_status,
    start_purchase_network,
    table_rows,
)
from tests.support import eventually, refusal

COUNTED = {
    "agency-1": "settlement_order",
    "agency-2": "settlement_order",
    "verification": "transaction_report",
    "institution": "transaction_record",
    "shop-1": "sales_record",
    "shop-2": "sales_record",
    "shop-3": "sales_record",
}
FINAL_REFUSED = ("DECLINED", "VOIDING", "VOIDED")


def open_shop_orders(network: LocalNetwork) -> list[dict[str, Any]]:
    """Shop orders still in flight or completed: a refusal must never leave one behind."""
    return [
        row
        for shop in ("shop-1", "shop-2", "shop-3")
        for row in table_rows(network, shop)["shop_order"]
        if row["status"] not in (*FINAL_REFUSED, "COMPLETED", "CANCELLED")
    ]


@pytest.fixture(scope="module")
def purchase_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    return start_purchase_network(network_factory)


def record_counts(network: LocalNetwork) -> dict[str, int]:
    return {entity: count(network, entity, table) for entity, table in COUNTED.items()}


async def refused_order(network: LocalNetwork, shop: str, value: str, items: list[tuple[str, int]]):
    async with ShopClient(network.node(shop).member_address, network.ca.read_bytes()) as client:
        return await refusal(client.place_order(value, items))


def test_over_the_credit_limit_is_refused_and_nothing_is_recorded(purchase_network: LocalNetwork):
    """bob's limit is 30.00: a 79.00 kettle gets CREDIT_LIMIT_EXCEEDED, at every variant."""
    network = purchase_network

    async def scenario() -> None:
        before = record_counts(network)
        for shop in ("shop-1", "shop-2", "shop-3"):
            value, _ = await anonymous_id(network, "agency-1", "bob", shop)
            refused = await refused_order(network, shop, value, [("kettle", 1)])
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "CREDIT_LIMIT_EXCEEDED",
            ), shop
            assert refused.metadata["order_number"], "a final refusal names its order"
        assert record_counts(network) == before
        assert open_shop_orders(network) == []
        notices = table_rows(network, "agency-1")["member_notice"]
        assert not [n for n in notices if n["member_id"] == "bob"]

    asyncio.run(scenario())


def test_concurrent_purchases_never_exceed_one_credit_limit(purchase_network: LocalNetwork):
    """Eight purchases at once against a limit that covers four: exactly four are approved.

    The credit check and the order it admits are one transaction at the agency, so racing
    orders are serialized there; the others are refused with CREDIT_LIMIT_EXCEEDED and
    leave no order behind.
    """
    network = purchase_network
    agency = network.node("agency-1")

    async def scenario() -> list[Any]:
        async with network.admin_channel(agency.address) as channel:
            await settlement_pb2_grpc.SettlementAdminServiceStub(channel).EnrollMember(
                settlement_pb2.EnrollMemberRequest(
                    request_id="enrol-racer",
                    member_id="racer",
                    display_name="Racing Member",
                    password="racer-password",
                    credit_limit=money(4 * 1_200 + 600, "USD"),  # four teas fit, a fifth not
                ),
                timeout=10,
            )
        ca = network.ca.read_bytes()
        async with AgencyClient(agency.member_address, ca) as member:
            await member.login("racer", "racer-password")
            value = (await member.anonymous_user_id("shop-1")).anonymous_user_id.value
        async with ShopClient(network.node("shop-1").member_address, ca) as shop:
            return await asyncio.gather(
                *(
                    shop.place_order(value, [("tea", 1)], request_id=f"race-{number}")
                    for number in range(8)
                ),
                return_exceptions=True,
            )

    outcomes = asyncio.run(scenario())
    approved = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(approved) == 4, outcomes
    assert len(refused) == 4
    assert {(r.code, r.reason) for r in map(decode_rpc_error, refused)} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "CREDIT_LIMIT_EXCEEDED")
    }
    orders = [
        row
        for row in table_rows(network, "agency-1")["settlement_order"]
        if row["member_id"] == "racer"
    ]
    assert sorted(row["order_number"] for row in orders) == sorted(
        order.order_number for order in approved
    )
    assert sum(row["amount_minor"] for row in orders) == 4 * 1_200


def test_a_suspended_shop_is_refused_by_the_guarantee_step(purchase_network: LocalNetwork):
    """Approval's retail entity identification guarantee says SUSPENDED: ENTITY_SUSPENDED."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        before = record_counts(network)
        await set_status(network, "shop-1", types_pb2.ENTITY_STATUS_SUSPENDED)
        try:
            refused = await refused_order(network, "shop-1", value, [("tea", 1)])
        finally:
            await set_status(network, "shop-1", types_pb2.ENTITY_STATUS_ACTIVE)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ENTITY_SUSPENDED",
        )
        assert record_counts(network) == before

    asyncio.run(scenario())


def test_a_suspended_agency_is_refused_by_the_guarantee_step(purchase_network: LocalNetwork):
    """The settlement agency identification guarantee says SUSPENDED: the shop refuses."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-2", "carol", "shop-1")
        before = record_counts(network)
        await set_status(network, "agency-2", types_pb2.ENTITY_STATUS_SUSPENDED)
        try:
            refused = await refused_order(network, "shop-1", value, [("tea", 1)])
        finally:
            await set_status(network, "agency-2", types_pb2.ENTITY_STATUS_ACTIVE)
        assert refused.reason == "ENTITY_SUSPENDED"
        assert refused.metadata.get("entity_id") == "agency-2"
        assert record_counts(network) == before

    asyncio.run(scenario())


def test_an_expired_anonymous_id_is_refused(purchase_network: LocalNetwork):
    """IDs of the short-ID agency expire within two seconds; afterwards ANONYMOUS_ID_EXPIRED,
    at the agency (push shop) and at the shop that received it (directory shop)."""
    network = purchase_network

    async def scenario() -> None:
        member = members_of(SHORT_ID_AGENCY)[0].member_id
        agency = network.node(SHORT_ID_AGENCY).member_address
        ids: dict[str, str] = {}
        async with AgencyClient(agency, network.ca.read_bytes()) as client:
            await client.login(member, password_of(SHORT_ID_AGENCY, member))
            for shop in ("shop-1", "shop-2"):
                issued = (await client.anonymous_user_id(shop)).anonymous_user_id
                ids[shop] = issued.value
        # Wait for the instant the agency stamped on the ID (the last one issued expires last).
        await asyncio.sleep(max(0.0, issued.expires_at.ToMicroseconds() / 1e6 - time.time()) + 0.2)
        before = record_counts(network)
        for shop, value in ids.items():
            refused = await refused_order(network, shop, value, [("tea", 1)])
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "ANONYMOUS_ID_EXPIRED",
            ), shop
        assert record_counts(network) == before

    asyncio.run(scenario())


def test_an_anonymous_id_at_the_wrong_shop_is_refused(purchase_network: LocalNetwork):
    """An ID for shop-2 presented at shop-3: the agency refuses ANONYMOUS_ID_WRONG_SHOP; at
    directory shop-1 it was never delivered: ANONYMOUS_ID_INVALID."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-2")
        before = record_counts(network)
        wrong = await refused_order(network, "shop-3", value, [("tea", 1)])
        assert (wrong.code, wrong.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ANONYMOUS_ID_WRONG_SHOP",
        )
        undelivered = await refused_order(network, "shop-1", value, [("tea", 1)])
        assert (undelivered.code, undelivered.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "ANONYMOUS_ID_INVALID",
        )
        assert record_counts(network) == before

    asyncio.run(scenario())


def _node_channel(network: LocalNetwork, entity: str) -> tuple[grpc.ChannelCredentials, Any]:
    """Mutual-TLS credentials holding a node's own certificate (to act as that node)."""
    node = network.node(entity)
    credentials = tls.client_credentials(
        network.ca.read_bytes(), node.cert.read_bytes(), node.key.read_bytes()
    )
    return credentials, node


async def _billed_as_shop_1(
    network: LocalNetwork,
    value: str,
    order_number: str,
    search_id: str = "",
    timeout_s: float = 10,
) -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
    """Acting as shop-1: the agency bills one tea (12.00) under ``order_number`` and files
    its transaction report with verification (the search's request ID: ``search_id``)."""
    credentials, shop = _node_channel(network, "shop-1")
    line = types_pb2.OrderLine(
        catalog_item_id="tea",
        description="Green tea",
        quantity=1,
        unit_price=money(1_200, "USD"),
        line_amount=money(1_200, "USD"),
    )
    async with grpc.aio.secure_channel(network.node("agency-1").address, credentials) as channel:
        report = await settlement_pb2_grpc.BillingServiceStub(
            channel
        ).SearchBillingAgencyIdentification(
            settlement_pb2.SearchBillingAgencyIdentificationRequest(
                request_id=search_id or request_id(),
                billing_agency_identification_search=settlement_pb2.BillingAgencyIdentificationSearch(
                    retail_entity=types_pb2.RetailEntityIdentification(
                        retail_entity_id="shop-1", display_name="Shop One", address=shop.address
                    ),
                    anonymous_user_id=value,
                    lines=[line],
                    amount=money(1_200, "USD"),
                    order_number=order_number,
                    payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
                ),
            ),
            timeout=timeout_s,
        )
    assert report.transaction_completion_report.order_number == order_number
    return report


Verify = Callable[..., Awaitable[approval_pb2.VerifyTransactionResponse]]


@contextlib.asynccontextmanager
async def _verifying_as_shop_1(network: LocalNetwork) -> AsyncIterator[Verify]:
    """Acting as shop-1 at approval, with its license key: ``verify(order_number,
    request_id, amount_minor=1_200, timeout_s=10)`` sends step 10's VerifyTransaction."""
    credentials, _ = _node_channel(network, "shop-1")
    license_key = read_license_key(network.node("shop-1").directory / "node.db", "shop-1")
    async with grpc.aio.secure_channel(network.node("institution").address, credentials) as ch:
        transactions = approval_pb2_grpc.TransactionServiceStub(ch)

        def verify(
            order_number: str, verify_id: str, amount_minor: int = 1_200, timeout_s: float = 10
        ) -> Awaitable[approval_pb2.VerifyTransactionResponse]:
            return transactions.VerifyTransaction(
                approval_pb2.VerifyTransactionRequest(
                    request_id=verify_id,
                    transaction_verification_request=approval_pb2.TransactionVerificationRequest(
                        order_number=order_number,
                        retail_entity_id="shop-1",
                        settlement_agency_id="agency-1",
                        amount=money(amount_minor, "USD"),
                    ),
                ),
                metadata=[(LICENSE_KEY_METADATA_KEY, license_key)],
                timeout=timeout_s,
            )

        yield verify


# A client deadline under the nodes' own bound per call (call_timeout_s, 5 s): a node that
# asked a hung peer before its own records would run out of it.
HUNG_PEER_TIMEOUT_S = 4.0


def test_a_request_answered_before_is_answered_again_while_its_peer_hangs(
    purchase_network: LocalNetwork,
):
    """Every node reads what it recorded for a request before it asks any peer: with the
    peer hung (not down), a retried purchase, billing search and verification are answered
    at once from the receiver's own records, and a request a shop refuses by itself
    (an anonymous ID it was never given) is refused without waiting on approval."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        elsewhere, _ = await anonymous_id(network, "agency-1", "alice", "shop-2")
        ca = network.ca.read_bytes()
        address = network.node("shop-1").member_address
        rid = request_id()
        async with ShopClient(address, ca) as client:
            bought = await client.place_order(value, [("tea", 1)], request_id=rid)
        search_id = request_id()
        order_number = f"ON-hung-{search_id[:8]}"
        billed = await _billed_as_shop_1(network, value, order_number, search_id)
        verify_id = request_id()
        async with _verifying_as_shop_1(network) as verify:
            verified = await verify(order_number, verify_id)
            async with frozen(network, "verification"):
                verified_again = await verify(
                    order_number, verify_id, timeout_s=HUNG_PEER_TIMEOUT_S
                )
        async with ShopClient(address, ca, timeout_s=HUNG_PEER_TIMEOUT_S) as client:
            async with frozen(network, "institution"):
                bought_again = await client.place_order(value, [("tea", 1)], request_id=rid)
                billed_again = await _billed_as_shop_1(
                    network, value, order_number, search_id, HUNG_PEER_TIMEOUT_S
                )
                refused = await refusal(client.place_order(elsewhere, [("tea", 1)]))
        assert (bought_again, billed_again, verified_again) == (bought, billed, verified)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.NOT_FOUND,
            "ANONYMOUS_ID_INVALID",
        )

    asyncio.run(scenario())


def test_a_purchase_asked_again_gets_its_order_while_approval_is_down(
    purchase_network: LocalNetwork,
):
    """A directory shop looks up the request_id's order before it asks approval for the
    member's agency (step 4): with approval down, a retry of a completed purchase still
    gets its order; a new purchase is pending with its order number, and finishes once
    approval is back."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        first_id, new_id = request_id(), request_id()
        address = network.node("shop-1").member_address
        async with ShopClient(address, network.ca.read_bytes()) as client:
            first = await client.place_order(value, [("tea", 1)], request_id=first_id)
            stop_node(network.node("institution"))
            try:
                again = await client.place_order(value, [("tea", 1)], request_id=first_id)
                pending = await refusal(client.place_order(value, [("tea", 1)], request_id=new_id))
            finally:
                await restart_node(network, "institution")

            async def finished() -> bool:
                try:
                    order = await client.place_order(value, [("tea", 1)], request_id=new_id)
                except grpc.RpcError as error:
                    still = decode_rpc_error(error).metadata.get("order_status")
                    if still != "PENDING":
                        raise
                    return False
                assert order.order_number == pending.metadata["order_number"]
                return True

            await eventually(finished, timeout_s=60)
        assert again == first
        assert pending.code == grpc.StatusCode.UNAVAILABLE
        assert pending.metadata["order_status"] == "PENDING"

    asyncio.run(scenario())


def test_a_billing_search_asked_again_gets_its_first_answer_while_approval_is_down(
    purchase_network: LocalNetwork,
):
    """The agency reads its own records before it asks approval's guarantee of the shop:
    with approval down, a retry of a search it answered still gets that answer, and a new
    order is refused as PEER_UNAVAILABLE, with nothing recorded."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        search_id = request_id()
        order_number = f"ON-asked-{search_id[:8]}"
        first = await _billed_as_shop_1(network, value, order_number, search_id)
        before = record_counts(network)
        stop_node(network.node("institution"))
        try:
            again = await _billed_as_shop_1(network, value, order_number, search_id)
            other = await refusal(_billed_as_shop_1(network, value, f"{order_number}-new"))
        finally:
            await restart_node(network, "institution")
        assert again == first
        assert (other.code, other.reason) == (grpc.StatusCode.UNAVAILABLE, "PEER_UNAVAILABLE")
        assert record_counts(network) == before

    asyncio.run(scenario())


def test_a_verified_transaction_asked_again_gets_its_first_answer_while_verification_is_down(
    purchase_network: LocalNetwork,
):
    """Approval reads its stored answer before it asks verification: with verification
    down, a retry of a request it answered still gets that answer, and nothing else is
    recorded: a new request for the same order is UNAVAILABLE."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        order_number = f"ON-again-{request_id()[:8]}"
        await _billed_as_shop_1(network, value, order_number)
        first_id = request_id()
        async with _verifying_as_shop_1(network) as verify:
            first = await verify(order_number, first_id)
            stop_node(network.node("verification"))
            try:
                again = await verify(order_number, first_id, timeout_s=30)
                other = await refusal(verify(order_number, request_id(), timeout_s=30))
            finally:
                await restart_node(network, "verification")
        assert again == first
        assert first.transaction_record.order_number == order_number
        assert (other.code, other.reason) == (grpc.StatusCode.UNAVAILABLE, "PEER_UNAVAILABLE")

    asyncio.run(scenario())


def test_a_report_and_verification_mismatch_is_refused_and_recorded(
    purchase_network: LocalNetwork,
):
    """Acting as shop-1, bill 12.00 at the agency but ask approval to verify 11.00:
    TRANSACTION_MISMATCH, a mismatch record, and no transaction record."""
    network = purchase_network

    async def scenario() -> None:
        value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
        order_number = f"ON-mismatch-{request_id()[:8]}"
        await _billed_as_shop_1(network, value, order_number)
        async with _verifying_as_shop_1(network) as verify:
            refused = await refusal(verify(order_number, request_id(), amount_minor=1_100))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "TRANSACTION_MISMATCH",
        )
        assert refused.metadata["mismatched_fields"] == "amount"
        async with network.admin_channel(network.node("institution").address) as channel:
            admin = approval_pb2_grpc.TransactionServiceStub(channel)
            mismatches = await admin.ListTransactionMismatches(
                approval_pb2.ListTransactionMismatchesRequest(order_number=order_number),
                timeout=10,
            )
            missing = await refusal(
                admin.GetTransactionRecord(
                    approval_pb2.GetTransactionRecordRequest(order_number=order_number), timeout=10
                )
            )
        [mismatch] = mismatches.transaction_mismatches
        assert mismatch.mismatched_fields == ["amount"]
        assert mismatch.requested_amount.amount_minor == 1_100
        assert mismatch.reported_amount.amount_minor == 1_200
        assert missing.reason == "ORDER_NOT_FOUND"

    asyncio.run(scenario())


def test_no_shop_table_holds_a_members_identity_or_credentials(purchase_network: LocalNetwork):
    """After purchases at every variant, scan every column of every table of every shop's
    database for member IDs, names, passwords and session tokens."""
    network = purchase_network

    async def scenario() -> list[str]:
        tokens = []
        for shop in ("shop-1", "shop-2", "shop-3"):
            purchase = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
            tokens.append(purchase.session_token)
        return tokens

    tokens = asyncio.run(scenario())
    secrets = list(tokens)
    for agency_members in DEMO_MEMBERS.values():
        for member in agency_members:
            secrets += [member.member_id, member.display_name, member.password]
    for agency in ("agency-1", "agency-2"):
        for stored in table_rows(network, agency)["member"]:
            secrets += [stored["password_hash_hex"], stored["password_salt_hex"]]
    for shop in ("shop-1", "shop-2", "shop-3"):
        tables = table_rows(network, shop)
        assert tables["sales_record"], f"{shop} recorded no sale"
        for table, rows in tables.items():
            for row in rows:
                for column, value in row.items():
                    text = (
                        value.decode("utf-8", errors="replace")
                        if isinstance(value, bytes)
                        else str(value)
                    )
                    for secret in secrets:
                        # Whole words only: a short ID may occur inside random key material.
                        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
                        assert not re.search(pattern, text), f"{shop}.{table}.{column}: {secret!r}"
    # The check itself can see member data where it exists: the agency's tables.
    agency_text = str(table_rows(network, "agency-1"))
    assert "alice" in agency_text


def test_shop_databases_are_plain_sqlite_files(purchase_network: LocalNetwork):
    """The privacy scan reads the real files: each shop's database opens read-only."""
    for shop in ("shop-1", "shop-2", "shop-3"):
        path = purchase_network.node(shop).directory / "node.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert {"shop_order", "sales_record", "catalog_item"} <= names


async def search_as_shop_1(
    network: LocalNetwork, change: Callable[[settlement_pb2.BillingAgencyIdentificationSearch], Any]
) -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
    """A billing agency identification search from shop-1 (its own certificate) for alice,
    as the shop would send it, with ``change`` applied first."""
    value, _ = await anonymous_id(network, "agency-1", "alice", "shop-1")
    async with network.admin_channel(network.node("institution").address) as channel:
        entity = (
            await approval_pb2_grpc.ApprovalAdminServiceStub(channel).GetEntity(
                approval_pb2.GetEntityRequest(entity_id="shop-1"), timeout=10
            )
        ).entity
    line = types_pb2.OrderLine(
        catalog_item_id="tea",
        description="Green tea, 100 g",
        quantity=2,
        unit_price=money(1_200, "USD"),
        line_amount=money(2_400, "USD"),
    )
    search = settlement_pb2.BillingAgencyIdentificationSearch(
        retail_entity=types_pb2.RetailEntityIdentification(
            retail_entity_id="shop-1", display_name=entity.display_name, address=entity.address
        ),
        anonymous_user_id=value,
        lines=[line],
        amount=money(2_400, "USD"),
        order_number=f"TEST-{request_id()[:16]}",
        payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
    )
    change(search)
    node = network.node("shop-1")
    credentials = tls.client_credentials(
        network.ca.read_bytes(), node.cert.read_bytes(), node.key.read_bytes()
    )
    async with grpc.aio.secure_channel(network.node("agency-1").address, credentials) as channel:
        response: settlement_pb2.SearchBillingAgencyIdentificationResponse = (
            await settlement_pb2_grpc.BillingServiceStub(channel).SearchBillingAgencyIdentification(
                settlement_pb2.SearchBillingAgencyIdentificationRequest(
                    request_id=request_id(), billing_agency_identification_search=search
                ),
                timeout=30,
            )
        )
        return response


def _wrong_display_name(search: settlement_pb2.BillingAgencyIdentificationSearch) -> None:
    search.retail_entity.display_name = "Not Shop One"


def _installments(search: settlement_pb2.BillingAgencyIdentificationSearch) -> None:
    search.payment_method = types_pb2.PAYMENT_METHOD_INSTALLMENTS
    search.installment_count = 3


def _in_euros(search: settlement_pb2.BillingAgencyIdentificationSearch) -> None:
    for line in search.lines:
        line.unit_price.currency_code = line.line_amount.currency_code = "EUR"
    search.amount.currency_code = "EUR"


def test_the_agency_approves_a_billing_search_that_matches_approvals_guarantee(
    purchase_network: LocalNetwork,
):
    """The baseline of the refusals below: the same search, unchanged, is approved."""
    response = asyncio.run(search_as_shop_1(purchase_network, lambda search: None))
    report = response.transaction_completion_report
    assert report.result == types_pb2.TRANSACTION_RESULT_APPROVED


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_wrong_display_name, "GUARANTEE_MISMATCH"),
        (_installments, "TRANSACTION_DECLINED"),
        (_in_euros, "TRANSACTION_DECLINED"),
    ],
    ids=["identification", "payment-method", "currency"],
)
def test_the_agency_refuses_what_approvals_guarantee_or_the_members_credit_does_not_cover(
    purchase_network: LocalNetwork, change: Callable[..., None], reason: str
):
    """Claim 1.9: the agency verifies approval's retail entity identification guarantee
    against the shop's billing search: an identification approval does not hold
    (GUARANTEE_MISMATCH), a payment method the shop never registered with approval, or a
    currency the member's credit is not in (TRANSACTION_DECLINED). Nothing is recorded."""
    network = purchase_network
    before = record_counts(network)
    error = asyncio.run(refusal(search_as_shop_1(network, change)))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    if reason == "GUARANTEE_MISMATCH":
        # The refusal names the field that differs, so the shop's operator can fix it.
        assert error.metadata["mismatched_fields"] == "display_name"
    assert record_counts(network) == before
