"""Purchase rules on in-memory SQLite: anonymous IDs, credit, guarantee cache, verification."""

from __future__ import annotations

import datetime

import pytest
from suretynet.approval.v1 import approval_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.approval import transactions
from nodes.common.convert import money
from nodes.common.errors import DomainError
from nodes.retail import guarantee_cache
from nodes.settlement import anonymous_ids, members, purchases
from storage.common.database import Store, open_database
from storage.retail.repository import RetailRepository
from storage.settlement.repository import SettlementRepository
from tests.storage_support import sqlite_steps

NOW = datetime.datetime(2030, 5, 1, 12, 0, 0)


@pytest.fixture
def settlement() -> tuple[Store, SettlementRepository]:
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = SettlementRepository(store.database)
    store.database.create_tables(repo.tables)
    store.transaction(
        lambda: members.enroll_member(
            repo,
            member_id="alice",
            display_name="Alice",
            password="correct horse",
            credit_limit_minor=5_000,
            currency_code="USD",
        )
    )
    return store, repo


def test_anonymous_ids_are_keyed_per_shop_prefixed_and_stable(settlement):
    """The same member gets one ID per shop and period, never derivable without the key."""
    store, repo = settlement

    def issue(shop: str, now: datetime.datetime = NOW) -> str:
        return store.transaction(
            lambda: anonymous_ids.issue(
                repo,
                member_id="alice",
                retail_entity_id=shop,
                routing_prefix="4111",
                validity_s=3_600,
                now=now,
            )
        ).value

    first, again, other = issue("shop-1"), issue("shop-1"), issue("shop-2")
    assert first == again
    assert first != other
    assert first.startswith("4111") and len(first) == 20 and first.isdigit()
    assert "alice" not in first
    later = issue("shop-1", NOW + datetime.timedelta(hours=3))
    assert later != first
    key = store.transaction(lambda: anonymous_ids.mac_key(repo))
    assert len(key) == 32


def test_resolution_refuses_unknown_wrong_shop_and_expired_ids(settlement):
    """Only the issuing agency resolves an ID, for its shop, before it expires."""
    store, repo = settlement
    row = store.transaction(
        lambda: anonymous_ids.issue(
            repo,
            member_id="alice",
            retail_entity_id="shop-1",
            routing_prefix="4111",
            validity_s=60,
            now=NOW,
        )
    )
    assert row.expires_at - NOW >= datetime.timedelta(seconds=60)
    resolved = store.transaction(lambda: anonymous_ids.resolve(repo, row.value, "shop-1", NOW))
    assert resolved.member_id == "alice"
    cases = [
        ("41110000000000000000", "shop-1", NOW, "ANONYMOUS_ID_INVALID"),
        (row.value, "shop-2", NOW, "ANONYMOUS_ID_WRONG_SHOP"),
        (row.value, "shop-1", row.expires_at, "ANONYMOUS_ID_EXPIRED"),
    ]
    for value, shop, now, reason in cases:
        with pytest.raises(DomainError) as caught:
            store.transaction(lambda: anonymous_ids.resolve(repo, value, shop, now))
        assert caught.value.reason == reason


def _search(
    order_number: str, amount_minor: int
) -> settlement_pb2.BillingAgencyIdentificationSearch:
    return settlement_pb2.BillingAgencyIdentificationSearch(
        retail_entity=types_pb2.RetailEntityIdentification(retail_entity_id="shop-1"),
        anonymous_user_id="41110000000000000001",
        lines=[
            types_pb2.OrderLine(
                catalog_item_id="tea",
                quantity=1,
                unit_price=money(amount_minor, "USD"),
                line_amount=money(amount_minor, "USD"),
            )
        ],
        amount=money(amount_minor, "USD"),
        order_number=order_number,
        payment_method=types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
    )


def test_credit_limit_refuses_without_recording_and_orders_are_idempotent(settlement):
    """4,000 fits a 5,000 limit; another 2,000 does not, and leaves no order or notice."""
    store, repo = settlement

    def record(search: settlement_pb2.BillingAgencyIdentificationSearch):
        purchase = purchases.Purchase(search, "alice", "agency-1", "Shop One", "trace")
        return store.transaction(lambda: purchases.record_order(repo, purchase))

    first = record(_search("ON-1", 4_000))
    assert record(_search("ON-1", 4_000)).completion_notice_id == first.completion_notice_id
    with pytest.raises(DomainError) as caught:
        record(_search("ON-2", 2_000))
    assert caught.value.reason == "CREDIT_LIMIT_EXCEEDED"
    with pytest.raises(DomainError) as reused:
        record(_search("ON-1", 3_000))
    assert reused.value.reason == "FIELD_INVALID"
    assert store.transaction(lambda: repo.orders.select().count()) == 1
    assert store.transaction(lambda: repo.notices.select().count()) == 1
    assert store.transaction(lambda: members.credit_used(repo, "alice")) == 4_000


def test_each_completion_notice_carries_its_own_sequence_number(settlement):
    """The stored notice (listed, and streamed after a sequence) names its row's sequence."""
    store, repo = settlement
    for number in (1, 2, 3):
        search = _search(f"ON-{number}", 1_000)
        purchase = purchases.Purchase(search, "alice", "agency-1", "Shop One", "trace")
        store.transaction(lambda purchase=purchase: purchases.record_order(repo, purchase))
    rows = store.transaction(lambda: list(repo.notices.select().order_by(repo.notices.sequence)))
    carried = [
        settlement_pb2.TransactionCompletionNotice.FromString(bytes(row.payload)).sequence
        for row in rows
    ]
    assert [row.sequence for row in rows] == carried == [1, 2, 3]


def _history(repo: SettlementRepository, delivered: int) -> None:
    """``delivered`` orders reported and voids forwarded long ago, and one of each still
    waiting: what an agency's tables hold after a long life."""
    past = NOW - datetime.timedelta(days=30)

    def order(number: int, reported: bool) -> dict[str, object]:
        return {
            "order_number": f"ON-{number}",
            "member_id": "alice",
            "retail_entity_id": "shop-1",
            "anonymous_user_id": "41110000000000000000",
            "amount_minor": 100,
            "currency_code": "USD",
            "billing_details": b"",
            "request_sha256": "0" * 64,
            "completion_notice_id": f"tcn-{number}",
            "created_at": past,
            "next_report_at": past,
            "reported_at": past if reported else None,
        }

    def void(number: int, forwarded: bool) -> dict[str, object]:
        return {
            "order_number": f"ON-{number}",
            "retail_entity_id": "shop-1",
            "reason": "ORDER_EXPIRED",
            "voided_at": past,
            "next_forward_at": past,
            "forwarded_at": past if forwarded else None,
        }

    rows = [order(number, True) for number in range(delivered)] + [order(delivered, False)]
    voided = [void(number, True) for number in range(delivered)] + [void(delivered, False)]
    repo.orders.insert_many(rows).execute()
    repo.voids.insert_many(voided).execute()


@pytest.mark.parametrize("delivered", [3, 3_000])
def test_the_agency_resumer_finds_what_is_undelivered(settlement, delivered):
    store, repo = settlement
    store.transaction(lambda: _history(repo, delivered))
    reports, voids = store.transaction(lambda: purchases.undelivered(repo, NOW, NOW, 50))
    assert [row.order_number for row in reports] == [f"ON-{delivered}"]
    assert [row.order_number for row in voids] == [f"ON-{delivered}"]


def test_the_agency_resumer_pass_costs_the_same_after_thousands_of_deliveries():
    """Its indexes hold only the undelivered reports and voids (settlement v0005): the pass
    read every order and every void ever recorded, so it cost more with each purchase."""

    def one_pass(delivered: int) -> int:
        store = Store(open_database("sqlite:///:memory:"), workers=1)
        repo = SettlementRepository(store.database)
        store.database.create_tables(repo.tables)
        store.transaction(lambda: _history(repo, delivered))
        return sqlite_steps(store, lambda: purchases.undelivered(repo, NOW, NOW, 50))

    passes = [one_pass(3), one_pass(3_000)]
    few, many = passes
    assert few > 0
    # An index lookup's depth grows by a level or so; a scan would be 1,000 times the work.
    assert many < 2 * few, passes


def _guarantee(
    agency: str, prefix: str, serial: int
) -> types_pb2.SettlementAgencyIdentificationGuarantee:
    return types_pb2.SettlementAgencyIdentificationGuarantee(
        settlement_agency_id=agency,
        routing_prefix=prefix,
        address="127.0.0.1:7000",
        status=types_pb2.ENTITY_STATUS_ACTIVE,
        registry_serial=serial,
    )


def test_pushed_guarantees_keep_the_newest_serial_and_detect_gaps():
    """Claim 10: an older push is ignored; a push after missed ones reports a gap."""
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = RetailRepository(store.database)
    store.database.create_tables(repo.tables)
    applied, gap, serial = store.transaction(
        lambda: guarantee_cache.receive_push(repo, _guarantee("agency-1", "4111", 3), 3, 0)
    )
    assert (applied, gap, serial) == (True, False, 3)
    stale = store.transaction(
        lambda: guarantee_cache.receive_push(repo, _guarantee("agency-1", "4111", 2), 2, 0)
    )
    assert stale[0] is False
    missed = store.transaction(
        lambda: guarantee_cache.receive_push(repo, _guarantee("agency-2", "5222", 9), 9, 7)
    )
    assert missed == (True, True, 3)
    routed = store.transaction(lambda: guarantee_cache.route(repo, "52220000000000000000", None))
    assert routed.settlement_agency_id == "agency-2"
    with pytest.raises(DomainError) as caught:
        store.transaction(lambda: guarantee_cache.route(repo, "99990000000000000000", None))
    assert caught.value.reason == "SETTLEMENT_AGENCY_NOT_FOUND"


def test_a_cache_older_than_its_staleness_bound_is_not_routed_from():
    """Claim 19's refresh bound: a cache never refreshed refuses to route."""
    store = Store(open_database("sqlite:///:memory:"), workers=1)
    repo = RetailRepository(store.database)
    store.database.create_tables(repo.tables)
    store.transaction(lambda: guarantee_cache.apply(repo, _guarantee("agency-1", "4111", 1)))
    with pytest.raises(DomainError) as caught:
        store.transaction(lambda: guarantee_cache.route(repo, "41110000000000000000", 60))
    assert caught.value.reason == "SETTLEMENT_AGENCY_NOT_FOUND"
    store.transaction(
        lambda: guarantee_cache.apply_all(repo, [], complete_to_serial=1, refresh_interval_s=5)
    )
    row = store.transaction(lambda: guarantee_cache.route(repo, "41110000000000000000", 60))
    assert row.settlement_agency_id == "agency-1"


def test_verification_compares_shop_agency_order_amount_and_result():
    """Step 10: each disagreeing field is named; an agreeing request has none."""
    request = approval_pb2.TransactionVerificationRequest(
        order_number="ON-1",
        retail_entity_id="shop-1",
        settlement_agency_id="agency-1",
        amount=money(4_900, "USD"),
    )
    report = verification_pb2.TransactionReport(
        order_number="ON-1",
        billing_details=types_pb2.BillingDetails(
            retail_entity_id="shop-1", settlement_agency_id="agency-1", amount=money(4_900, "USD")
        ),
        result=types_pb2.TRANSACTION_RESULT_APPROVED,
    )
    assert transactions.mismatched_fields(request, report) == []
    other = approval_pb2.TransactionVerificationRequest()
    other.CopyFrom(request)
    other.retail_entity_id = "shop-2"
    other.amount.currency_code = "EUR"
    assert transactions.mismatched_fields(other, report) == ["retail_entity_id", "amount"]
