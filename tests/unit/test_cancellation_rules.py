"""Cancellation rules on in-memory SQLite: the agency's decision, billing, verification."""

from __future__ import annotations

import functools

import pytest
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common.convert import money
from nodes.common.errors import DomainError
from nodes.common.identity import EntityIdentity
from nodes.settlement import billing, cancellations, members, purchases
from nodes.verification import cancellations as witness
from nodes.verification import reports
from storage.common.database import Store, open_database
from storage.settlement.repository import SettlementRepository
from storage.verification.repository import VerificationRepository

SHOP = EntityIdentity("retail", "shop-1")
AGENCY = EntityIdentity("settlement", "agency-1")


@pytest.fixture
def agency() -> tuple[Store, SettlementRepository]:
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = SettlementRepository(store.database)
    store.database.create_tables(repo.tables)

    def seed() -> None:
        members.enroll_member(
            repo,
            member_id="alice",
            display_name="Alice",
            password="correct horse",
            credit_limit_minor=10_000,
            currency_code="USD",
        )
        for number, amount in (("ON-1", 4_000), ("ON-2", 3_000)):
            search = settlement_pb2.BillingAgencyIdentificationSearch(
                retail_entity=types_pb2.RetailEntityIdentification(retail_entity_id="shop-1"),
                anonymous_user_id="41110000000000000001",
                lines=[
                    types_pb2.OrderLine(
                        quantity=1,
                        unit_price=money(amount, "USD"),
                        line_amount=money(amount, "USD"),
                    )
                ],
                amount=money(amount, "USD"),
                order_number=number,
                payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
            )
            purchases.record_order(
                repo, purchases.Purchase(search, "alice", "agency-1", "Shop One", "t")
            )

    store.transaction(seed)
    return store, repo


def notice(order_number: str, procedure: int, cancel_id: str = "") -> types_pb2.CancelRequestNotice:
    return types_pb2.CancelRequestNotice(
        cancel_request_id=cancel_id or f"CR-{order_number}",
        order_number=order_number,
        retail_entity_id="shop-1",
        settlement_agency_id="agency-1",
        requested_by=types_pb2.CANCEL_REQUESTER_MEMBER,
        procedure=procedure,
    )


def test_not_yet_billed_stops_billing_and_billed_credits_back_once(agency):
    """NOTIFIED applies at once; the credit back is the order's amount, and only once."""
    store, repo = agency
    store.transaction(lambda: billing.run_billing(repo, None, 0))
    assert store.transaction(lambda: repo.order("ON-1").billing_state) == "BILLED"
    row = store.transaction(
        lambda: cancellations.begin(repo, notice("ON-1", types_pb2.CANCEL_PROCEDURE_NOTIFIED), SHOP)
    )
    assert (row.decision, row.status, row.amount_minor) == ("CREDITED_BACK", "DONE", 4_000)
    again = store.transaction(
        lambda: cancellations.begin(repo, notice("ON-1", types_pb2.CANCEL_PROCEDURE_NOTIFIED), SHOP)
    )
    assert again.decided_at == row.decided_at
    with pytest.raises(DomainError) as caught:
        store.transaction(
            lambda: cancellations.begin(
                repo, notice("ON-1", types_pb2.CANCEL_PROCEDURE_NOTIFIED, "CR-other"), SHOP
            )
        )
    assert caught.value.reason == "ORDER_ALREADY_CANCELLED"
    assert store.transaction(lambda: repo.order("ON-1").billing_state) == "CREDITED_BACK"
    assert store.transaction(lambda: members.credit_used(repo, "alice")) == 3_000
    kinds = store.transaction(lambda: [n.kind for n in repo.notices.select()])
    assert kinds.count("CANCELLATION_PROCESSED") == 1


def test_a_verified_cancellation_is_reserved_until_verified_and_can_be_abandoned(agency):
    """VERIFIED: the decision waits; billing skips the order; a refusal leaves it as it was."""
    store, repo = agency
    row = store.transaction(
        lambda: cancellations.begin(repo, notice("ON-2", types_pb2.CANCEL_PROCEDURE_VERIFIED), SHOP)
    )
    assert (row.decision, row.status) == ("STOPPED_BILLING", "PENDING")
    run = store.transaction(lambda: billing.run_billing(repo, None, 0))
    assert [order.order_number for order in run.orders] == ["ON-1"]
    assert store.transaction(lambda: repo.order("ON-2").billing_state) == "NOT_YET_BILLED"
    store.transaction(lambda: cancellations.abandon(repo, row))
    assert store.transaction(lambda: repo.cancellations.select().count()) == 0
    row = store.transaction(
        lambda: cancellations.begin(repo, notice("ON-2", types_pb2.CANCEL_PROCEDURE_VERIFIED), SHOP)
    )
    done = store.transaction(
        lambda: cancellations.acknowledge(repo, row, types_pb2.CancelVerification())
    )
    assert done.status == "DONE"
    assert store.transaction(lambda: repo.order("ON-2").billing_state) == "BILLING_STOPPED"


def test_another_shop_may_not_cancel_the_order(agency):
    """A shop that did not sell the order is refused PERMISSION_DENIED / NOT_OWNER."""
    store, repo = agency
    with pytest.raises(DomainError) as caught:
        store.transaction(
            lambda: cancellations.begin(
                repo,
                notice("ON-1", types_pb2.CANCEL_PROCEDURE_NOTIFIED),
                EntityIdentity("retail", "shop-2"),
            )
        )
    assert (caught.value.reason, caught.value.kind.value) == ("NOT_OWNER", "PERMISSION_DENIED")


def test_verification_refuses_a_process_notice_for_another_order_under_verified():
    """Claim 3: the order numbers must match; under NOTIFIED the notice is only stored."""
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = VerificationRepository(store.database)
    store.database.create_tables(repo.tables)
    for number in ("ON-1", "ON-2"):
        report = verification_pb2.TransactionReport(
            order_number=number,
            billing_details=types_pb2.BillingDetails(
                retail_entity_id="shop-1", settlement_agency_id="agency-1", amount=money(100, "USD")
            ),
            result=types_pb2.TRANSACTION_RESULT_APPROVED,
        )
        store.transaction(functools.partial(reports.store_report, repo, report, "t"))
    store.transaction(
        lambda: witness.store_request(
            repo, notice("ON-1", types_pb2.CANCEL_PROCEDURE_VERIFIED, "CR-x"), SHOP
        )
    )
    process = verification_pb2.CancelProcessNotice(
        cancel_request_id="CR-x",
        order_number="ON-2",
        settlement_agency_id="agency-1",
        decision=types_pb2.CANCEL_DECISION_STOPPED_BILLING,
        amount=money(100, "USD"),
    )
    with pytest.raises(DomainError) as caught:
        store.transaction(lambda: witness.store_process(repo, process, AGENCY))
    assert caught.value.reason == "CANCEL_ORDER_NUMBER_MISMATCH"
    assert store.transaction(lambda: repo.cancel_processes.select().count()) == 0
    process.order_number = "ON-1"
    row, _ = store.transaction(lambda: witness.store_process(repo, process, AGENCY))
    assert row.verification is not None
