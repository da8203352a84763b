"""Reconciliation of invoices and payouts against completed transactions (claims 6-7).

Per currency, over the transactions settled in the period, this marketplace's books obey

    purchaser billed + partner billed - paid out == mediation charges + local sales

exactly, in integer minor units: claim 6 bills the purchaser the gross and pays out the
gross less the charge, claim 7 bills the partner the charge, and a local sale bills its
total. Each transaction is also checked on its own, so a mismatch names its transaction.
"""

from __future__ import annotations

import datetime
from collections import defaultdict

from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.type.v1 import types_pb2

from nodes.marketplace.catalog import money
from nodes.marketplace.money import mediation_charge_minor
from storage.common import statements
from storage.marketplace.models import SuppliedTransactionRow, TransactionRow
from storage.marketplace.repository import MarketplaceRepository


class _Books:
    def __init__(self) -> None:
        self.totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.discrepancies: list[pb.ReconciliationDiscrepancy] = []

    def add(self, name: str, currency: str, amount_minor: int) -> None:
        self.totals[name][currency] += amount_minor

    def expect(
        self,
        row_ids: tuple[str, str],
        what: str,
        expected: int,
        recorded: int,
        currency: str,
    ) -> None:
        if expected != recorded:
            self.discrepancies.append(
                pb.ReconciliationDiscrepancy(
                    transaction_id=row_ids[0],
                    mediated_transaction_id=row_ids[1],
                    description=what,
                    expected_amount=money(expected, currency),
                    recorded_amount=money(recorded, currency),
                )
            )

    def listed(self, name: str) -> list[types_pb2.Money]:
        return [money(amount, currency) for currency, amount in sorted(self.totals[name].items())]


def _invoiced(
    repo: MarketplaceRepository, self_id: str, kind: str, transaction_id: str, mediated_id: str
) -> int:
    invoices = repo.invoices
    query = invoices.select().where(
        (invoices.issuer_marketplace_id == self_id)
        & (invoices.kind == kind)
        & (invoices.status != "VOID")
    )
    if transaction_id:
        query = query.where(invoices.transaction_id == transaction_id)
    else:
        query = query.where(invoices.mediated_transaction_id == mediated_id)
    return sum(row.amount_minor for row in query)


def _paid_out(repo: MarketplaceRepository, payer_id: str, mediated_id: str) -> tuple[int, int]:
    """Net paid and charge deducted on the payouts of one mediated transaction."""
    payouts = repo.payouts
    rows = payouts.select().where(
        (payouts.mediated_transaction_id == mediated_id)
        & (payouts.payer_marketplace_id == payer_id)
    )
    return sum(row.net_amount_minor for row in rows), sum(
        row.mediation_charge_minor for row in rows
    )


def _check_own(
    repo: MarketplaceRepository, self_id: str, row: TransactionRow, books: _Books
) -> None:
    ids = (row.transaction_id, row.mediated_transaction_id)
    currency, gross = row.currency_code, row.total_amount_minor
    if row.kind == "LOCAL":
        billed = _invoiced(repo, self_id, "PURCHASE", row.transaction_id, "")
        books.expect(ids, "purchase invoice differs from the sale", gross, billed, currency)
        books.add("purchaser_billed", currency, billed)
        books.add("local_sales", currency, gross)
        return
    charge = mediation_charge_minor(gross, row.fee_basis_points)
    books.add("charges", currency, charge)
    if row.settlement_mode == "PURCHASER_MARKETPLACE_BILLS":
        billed = _invoiced(repo, self_id, "PURCHASE", row.transaction_id, "")
        net, deducted = _paid_out(repo, self_id, row.mediated_transaction_id)
        books.expect(ids, "purchase invoice differs from the gross", gross, billed, currency)
        books.expect(ids, "payout differs from gross less charge", gross - charge, net, currency)
        books.expect(ids, "payout deducts another charge", charge, deducted, currency)
        books.add("purchaser_billed", currency, billed)
        books.add("payouts", currency, net)
    else:
        billed = _invoiced(repo, self_id, "MEDIATION_CHARGE", row.transaction_id, "")
        books.expect(ids, "charge invoice differs from the charge", charge, billed, currency)
        books.add("partner_billed", currency, billed)


def _check_supplied(
    repo: MarketplaceRepository, self_id: str, row: SuppliedTransactionRow, books: _Books
) -> None:
    ids = ("", row.mediated_transaction_id)
    estimate = pb.Estimate.FromString(bytes(row.estimate))
    gross, currency = estimate.total_amount.amount_minor, estimate.total_amount.currency_code
    contract = statements.find(repo.contracts, contract_id=row.contract_id)
    if contract is None:
        books.expect(ids, "the contract is no longer on record", 0, gross, currency)
        return
    charge = mediation_charge_minor(gross, contract.fee_basis_points)
    if row.settlement_mode == "PURCHASER_MARKETPLACE_BILLS":
        net, _ = _paid_out(repo, row.requesting_marketplace_id, row.mediated_transaction_id)
        books.expect(
            ids, "payout received differs from gross less charge", gross - charge, net, currency
        )
    else:
        billed = _invoiced(repo, self_id, "PURCHASE", "", row.mediated_transaction_id)
        owed = _invoiced(
            repo, row.requesting_marketplace_id, "MEDIATION_CHARGE", "", row.mediated_transaction_id
        )
        books.expect(ids, "our purchase invoice differs from the gross", gross, billed, currency)
        books.expect(ids, "charge billed to us differs from the charge", charge, owed, currency)


def reconcile(
    repo: MarketplaceRepository,
    self_id: str,
    period_start: datetime.datetime | None,
    period_end: datetime.datetime | None,
) -> pb.ReconcileResponse:
    """Checks every transaction settled in the period; read-only."""
    books = _Books()
    own, theirs = repo.transactions, repo.supplied
    own_query = own.select().where(own.state == "SETTLED")
    supplied_query = theirs.select().where(theirs.state == "SETTLED")
    if period_start is not None:
        own_query = own_query.where(own.created_at >= period_start)
        supplied_query = supplied_query.where(theirs.created_at >= period_start)
    if period_end is not None:
        own_query = own_query.where(own.created_at < period_end)
        supplied_query = supplied_query.where(theirs.created_at < period_end)
    checked = 0
    for row in own_query:
        _check_own(repo, self_id, row, books)
        checked += 1
    for supplied in supplied_query:
        _check_supplied(repo, self_id, supplied, books)
        checked += 1
    totals = books.totals
    currencies = {currency for amounts in totals.values() for currency in amounts}
    for currency in sorted(currencies):
        left = (
            totals["purchaser_billed"][currency]
            + totals["partner_billed"][currency]
            - totals["payouts"][currency]
        )
        right = totals["charges"][currency] + totals["local_sales"][currency]
        books.expect(
            ("", ""), "billed less paid out differs from charges plus sales", right, left, currency
        )
    return pb.ReconcileResponse(
        checked_transaction_count=checked,
        purchaser_billed_totals=books.listed("purchaser_billed"),
        mediation_charge_totals=books.listed("charges"),
        payout_totals=books.listed("payouts"),
        partner_billed_totals=books.listed("partner_billed"),
        local_sales_totals=books.listed("local_sales"),
        discrepancies=books.discrepancies,
    )
