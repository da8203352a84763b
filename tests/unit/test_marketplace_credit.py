"""The credit enquiry's arithmetic and the money rules, on in-memory SQLite (claims 2-4, 6-7)."""

from __future__ import annotations

import datetime

import pytest

from nodes.common.errors import DomainError
from nodes.marketplace import credit, orders
from nodes.marketplace.credit import Standard, score
from nodes.marketplace.money import mediation_charge_minor
from storage.common.database import Store, open_database
from storage.marketplace.repository import MarketplaceRepository

STANDARDS = credit.DEFAULT_STANDARDS
NOW = datetime.datetime(2030, 6, 1, 12, 0, 0)

# item, count just meeting its default standard, count one over it.
EDGES = [
    ("ORDER_CANCELS", 2, 3),
    ("ORDER_CHANGES", 3, 4),
    ("NON_DEFECTIVE_RETURNS", 1, 2),
    ("PAYMENT_DELAYS", 0, 1),
]


@pytest.mark.parametrize(("item", "meets", "fails"), EDGES)
def test_each_item_scores_plus_on_its_standard_and_minus_one_over_it(item, meets, fails):
    """Claim 4: at most max_count is +1, one more is -1; the other items stay +1."""
    at_standard = score({item: meets}, STANDARDS, 2)
    over_standard = score({item: fails}, STANDARDS, 2)
    points = {entry.item: entry.points for entry in at_standard.items}
    assert points == dict.fromkeys(credit.ITEMS, 1)
    assert (at_standard.total_points, at_standard.guaranteed) == (4, True)
    points = {entry.item: entry.points for entry in over_standard.items}
    assert points[item] == -1
    assert sum(1 for value in points.values() if value == 1) == 3
    assert (over_standard.total_points, over_standard.guaranteed) == (2, True)


@pytest.mark.parametrize(
    ("counts", "total", "guaranteed"),
    [
        ({}, 4, True),
        ({"ORDER_CANCELS": 3}, 2, True),
        ({"ORDER_CANCELS": 3, "PAYMENT_DELAYS": 1}, 0, False),
        ({"ORDER_CHANGES": 9, "NON_DEFECTIVE_RETURNS": 5, "PAYMENT_DELAYS": 2}, -2, False),
        (
            {
                "ORDER_CANCELS": 9,
                "ORDER_CHANGES": 9,
                "NON_DEFECTIVE_RETURNS": 9,
                "PAYMENT_DELAYS": 9,
            },
            -4,
            False,
        ),
    ],
)
def test_the_total_against_the_threshold_decides_the_guarantee(counts, total, guaranteed):
    """Claim 4: the sum of the items' points, compared with the threshold (2 by default)."""
    result = score(counts, STANDARDS, credit.DEFAULT_THRESHOLD_POINTS)
    assert (result.total_points, result.guaranteed) == (total, guaranteed)


def test_an_item_without_a_standard_scores_nothing_and_the_threshold_is_inclusive():
    """Only configured items count; a total equal to the threshold is guaranteed."""
    result = score({"PAYMENT_DELAYS": 5}, [Standard("ORDER_CANCELS", 0, 30)], 1)
    assert [entry.item for entry in result.items] == ["ORDER_CANCELS"]
    assert (result.total_points, result.guaranteed) == (1, True)


@pytest.mark.parametrize(
    ("gross", "basis_points", "charge"),
    [(3702, 250, 92), (5439, 333, 181), (9999, 1, 0), (10000, 1, 1), (1, 10000, 1), (0, 500, 0)],
)
def test_mediation_charge_rounds_down_and_the_payout_is_the_exact_rest(gross, basis_points, charge):
    """The documented rounding rule: floor(gross * bp / 10000); gross - charge pays out."""
    assert mediation_charge_minor(gross, basis_points) == charge
    assert (gross - charge) + charge == gross


@pytest.fixture
def repo() -> MarketplaceRepository:
    store = Store(open_database("sqlite:///:memory:"))
    repository = MarketplaceRepository(store.database)
    store.database.create_tables(repository.tables)
    return repository


def test_standards_are_validated_and_replace_the_defaults(repo):
    """SetCreditStandards: one standard per item, bounded windows, bounded threshold."""
    with pytest.raises(DomainError) as refused:
        credit.set_standards(
            repo, [Standard("ORDER_CANCELS", 1, 30), Standard("ORDER_CANCELS", 2, 30)], 1, NOW
        )
    assert refused.value.violations[0].field == "standards[1].item"
    with pytest.raises(DomainError) as refused:
        credit.set_standards(repo, [Standard("ORDER_CHANGES", 1, 0)], 9, NOW)
    assert {v.field for v in refused.value.violations} == {
        "standards[0].window_days",
        "threshold_points",
    }
    credit.set_standards(repo, [Standard("PAYMENT_DELAYS", 0, 90)], 1, NOW)
    assert credit.current_standards(repo) == ([Standard("PAYMENT_DELAYS", 0, 90)], 1)


def test_late_and_missing_payments_are_payment_delays_within_the_window(repo):
    """Claim 3 payment delays: a payment after the due date, or an invoice unpaid past it."""
    issued = NOW - datetime.timedelta(days=40)

    def invoice(amount_minor: int):
        return orders.issue_invoice(
            repo,
            kind="PURCHASE",
            issuer_id="market-1",
            drawee_member_id="late-payer",
            transaction_id="TX-1",
            amount_minor=amount_minor,
            currency_code="JPY",
            terms_days=30,
            now=issued,
        )

    on_time, late, unpaid = invoice(100), invoice(200), invoice(300)
    orders.apply_payment(repo, on_time, 100, "JPY", issued + datetime.timedelta(days=29), NOW)
    orders.apply_payment(repo, late, 150, "JPY", issued + datetime.timedelta(days=31), NOW)
    orders.apply_payment(repo, late, 50, "JPY", issued + datetime.timedelta(days=32), NOW)
    assert late.status == "PAID"
    standard = Standard("PAYMENT_DELAYS", 0, 365)
    # One for the late invoice (however many instalments), one for the unpaid one.
    assert credit.count_item(repo, "late-payer", standard, NOW) == 2
    assert unpaid.status == "OPEN"
    assert credit.count_item(repo, "late-payer", Standard("PAYMENT_DELAYS", 0, 5), NOW) == 0
    with pytest.raises(DomainError) as refused:
        orders.apply_payment(repo, unpaid, 301, "JPY", NOW, NOW)
    assert refused.value.violations[0].field == "amount.amount_minor"
    with pytest.raises(DomainError) as refused:
        orders.apply_payment(repo, unpaid, 1, "USD", NOW, NOW)
    assert refused.value.violations[0].field == "amount.currency_code"
    with pytest.raises(DomainError) as refused:
        orders.apply_payment(repo, unpaid, 1, "JPY", NOW + datetime.timedelta(days=1), NOW)
    assert refused.value.violations[0].field == "paid_at"


def test_enquiry_breakdown_explains_each_item(repo):
    """The breakdown an operator reads when a purchaser is refused (claims 2-4)."""
    for _ in range(3):
        credit.record_event(repo, "m", "ORDER_CANCELS", "TX", "cancelled", NOW)
    enquiry = credit.enquire(repo, "m", NOW)
    assert (enquiry.total_points, enquiry.guaranteed) == (2, True)
    details = credit.breakdown(enquiry)
    assert details["order_cancels"] == "3 (at most 2 in 365 days): -1"
    assert details["payment_delays"] == "0 (at most 0 in 365 days): +1"
    # Events older than the window no longer count.
    later = NOW + datetime.timedelta(days=366)
    assert credit.enquire(repo, "m", later).total_points == 4
