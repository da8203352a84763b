"""A purchaser's transactions with its own marketplace: local supply, changes, billing.

Every change a purchaser makes to an order is recorded in its purchase history here, by the
use case that makes it (claim 3 items): cancels, content changes, non-defective returns,
and late payments. Nothing else writes history.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

import peewee
from suretynet.marketplace.v1 import marketplace_pb2 as pb

from nodes.common.errors import DomainError, ErrorKind, invalid
from nodes.marketplace import catalog, credit
from nodes.marketplace.money import check_amount, total_minor
from storage.common import statements
from storage.marketplace.models import InvoiceRow, TransactionRow
from storage.marketplace.repository import MarketplaceRepository

R = TypeVar("R", bound=peewee.Model)

NOT_SHIPPED = ("ORDERED",)
RETURNABLE = ("DELIVERED", "SETTLED")
MAX_QUANTITY = 1_000_000
# A payment dated further ahead than this is a typo, not a payment.
PAYMENT_CLOCK_SKEW = datetime.timedelta(minutes=5)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def derived_id(prefix: str, *parts: str) -> str:
    """An ID that a retry of the same request derives again, revealing none of its parts."""
    return f"{prefix}-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def check_quantity(quantity: int, field_path: str = "quantity") -> None:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise invalid(field_path, f"must be 1-{MAX_QUANTITY}")


def owned(
    repo: MarketplaceRepository, member_id: str | None, transaction_id: str
) -> TransactionRow:
    """The transaction, if it belongs to ``member_id`` (None: the operator, any member)."""
    table = repo.transactions
    row: TransactionRow | None = statements.find(table, transaction_id=transaction_id)
    if row is None or (member_id is not None and row.member_id != member_id):
        # Someone else's transaction is reported exactly like a missing one.
        raise DomainError(
            ErrorKind.NOT_FOUND, "TRANSACTION_NOT_FOUND", f"no transaction {transaction_id!r}"
        )
    return row


def require_state(row: Any, allowed: tuple[str, ...], action: str) -> None:
    """Refuses (TRANSACTION_STATE_INVALID) a transaction, ours or supplied, in another state."""
    if row.state not in allowed:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"cannot {action} a transaction in state {row.state}",
            metadata={"state": row.state},
        )


def save(row: R, now: datetime.datetime, **changes: object) -> R:
    """Applies ``changes`` to a transaction row, ours or supplied, and stamps it."""
    for name, value in {**changes, "updated_at": now}.items():
        setattr(row, name, value)
    row.save()
    return row


def supply_locally(
    repo: MarketplaceRepository,
    *,
    member_id: str,
    transaction_id: str,
    request_sha256: str,
    commodity_id: str,
    quantity: int,
    now: datetime.datetime,
) -> TransactionRow | None:
    """Supplies from this marketplace's own stock (claim 1), or None when it cannot."""
    row = catalog.commodity(repo, commodity_id)
    if row is None or row.stock_quantity < quantity:
        return None
    catalog.take_stock(repo, commodity_id, quantity)
    created: TransactionRow = repo.transactions.create(
        transaction_id=transaction_id,
        member_id=member_id,
        request_sha256=request_sha256,
        kind="LOCAL",
        commodity_id=commodity_id,
        commodity_display_name=row.display_name,
        quantity=quantity,
        state="ORDERED",
        unit_price_minor=row.unit_price_minor,
        total_amount_minor=total_minor(row.unit_price_minor, quantity),
        currency_code=row.currency_code,
        created_at=now,
        updated_at=now,
    )
    return created


def cancel_local(
    repo: MarketplaceRepository, row: TransactionRow, reason: str, now: datetime.datetime
) -> TransactionRow:
    require_state(row, NOT_SHIPPED, "cancel")
    catalog.restock(repo, row.commodity_id, row.quantity)
    credit.record_event(repo, row.member_id, "ORDER_CANCELS", row.transaction_id, reason, now)
    return save(row, now, state="CANCELLED")


def change_local(
    repo: MarketplaceRepository,
    row: TransactionRow,
    quantity: int,
    reason: str,
    now: datetime.datetime,
) -> TransactionRow:
    require_state(row, NOT_SHIPPED, "change")
    check_quantity(quantity)
    if quantity == row.quantity:
        raise invalid("quantity", "is the order's quantity already")
    if quantity > row.quantity:
        catalog.take_stock(repo, row.commodity_id, quantity - row.quantity)
    else:
        catalog.restock(repo, row.commodity_id, row.quantity - quantity)
    detail = f"quantity {row.quantity} -> {quantity}: {reason}"
    credit.record_event(repo, row.member_id, "ORDER_CHANGES", row.transaction_id, detail, now)
    return save(
        row,
        now,
        quantity=quantity,
        total_amount_minor=total_minor(row.unit_price_minor, quantity),
    )


def return_local(
    repo: MarketplaceRepository,
    row: TransactionRow,
    defective: bool,
    reason: str,
    now: datetime.datetime,
) -> TransactionRow:
    require_state(row, RETURNABLE, "return the goods of")
    if not defective:
        catalog.restock(repo, row.commodity_id, row.quantity)
    record_return(repo, row, defective, reason, now)
    return save(row, now, state="RETURNED")


def record_return(
    repo: MarketplaceRepository,
    row: TransactionRow,
    defective: bool,
    reason: str,
    now: datetime.datetime,
) -> None:
    """Voids the unpaid invoice of returned goods; a non-defective return goes on record."""
    void_unpaid_invoices(repo, row.transaction_id)
    if not defective:
        credit.record_event(
            repo, row.member_id, "NON_DEFECTIVE_RETURNS", row.transaction_id, reason, now
        )


def void_unpaid_invoices(repo: MarketplaceRepository, transaction_id: str) -> None:
    invoices = repo.invoices
    invoices.update(status="VOID").where(
        (invoices.transaction_id == transaction_id)
        & (invoices.status == "OPEN")
        & (invoices.paid_amount_minor == 0)
        & (invoices.kind == "PURCHASE")
    ).execute()


@dataclass(frozen=True)
class ShipmentInput:
    status: str
    carrier: str
    tracking_number: str
    estimated_delivery_at: datetime.datetime | None
    note: str


SHIPMENT_STATES = {"PREPARING": "ORDERED", "SHIPPED": "SHIPPED", "DELIVERED": "DELIVERED"}
SHIPMENT_ORDER = ("PREPARING", "SHIPPED", "DELIVERED")


def next_shipment(
    current: pb.Shipment | None,
    state: str,
    update: ShipmentInput,
    shipment_id: str,
    now: datetime.datetime,
) -> pb.Shipment:
    """The shipment after ``update``; refuses updates that go backwards or skip an order."""
    if update.status not in SHIPMENT_STATES:
        raise invalid("status", "must be PREPARING, SHIPPED or DELIVERED (returns: ReturnGoods)")
    if state not in ("ORDERED", "SHIPPED"):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"cannot ship a transaction in state {state}",
            metadata={"state": state},
        )
    previous = (
        pb.ShipmentStatus.Name(current.status).removeprefix("SHIPMENT_STATUS_") if current else ""
    )
    if previous and SHIPMENT_ORDER.index(update.status) < SHIPMENT_ORDER.index(previous):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"shipment is {previous} already; it cannot go back to {update.status}",
        )
    shipment = pb.Shipment()
    if current is not None:
        shipment.CopyFrom(current)
    shipment.shipment_id = shipment.shipment_id or shipment_id
    shipment.status = pb.ShipmentStatus.Value("SHIPMENT_STATUS_" + update.status)
    if update.carrier:
        shipment.carrier = update.carrier
    if update.tracking_number:
        shipment.tracking_number = update.tracking_number
    if update.estimated_delivery_at is not None:
        shipment.estimated_delivery_at.FromDatetime(_utc(update.estimated_delivery_at))
    if update.status in ("SHIPPED", "DELIVERED") and not shipment.HasField("shipped_at"):
        shipment.shipped_at.FromDatetime(_utc(now))
    if update.status == "DELIVERED":
        shipment.delivered_at.FromDatetime(_utc(now))
    return shipment


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(tzinfo=datetime.UTC)


def ship_local(
    repo: MarketplaceRepository,
    row: TransactionRow,
    update: ShipmentInput,
    self_id: str,
    payment_terms_days: int,
    now: datetime.datetime,
) -> pb.Shipment:
    """Records a shipment of a local order; delivery bills the purchaser (claim 1 local)."""
    current = pb.Shipment.FromString(bytes(row.shipment)) if row.shipment else None
    shipment = next_shipment(current, row.state, update, f"SH-{row.transaction_id}", now)
    state = SHIPMENT_STATES[update.status]
    if state == "DELIVERED":
        issue_invoice(
            repo,
            kind="PURCHASE",
            issuer_id=self_id,
            drawee_member_id=row.member_id,
            transaction_id=row.transaction_id,
            amount_minor=row.total_amount_minor,
            currency_code=row.currency_code,
            terms_days=payment_terms_days,
            now=now,
        )
        state = "SETTLED"
    save(row, now, shipment=shipment.SerializeToString(), state=state)
    return shipment


def issue_invoice(
    repo: MarketplaceRepository,
    *,
    kind: str,
    issuer_id: str,
    amount_minor: int,
    currency_code: str,
    terms_days: int,
    now: datetime.datetime,
    drawee_member_id: str = "",
    drawee_purchaser_pseudonym: str = "",
    drawee_marketplace_id: str = "",
    transaction_id: str = "",
    mediated_transaction_id: str = "",
    issuer_invoice_id: str = "",
) -> InvoiceRow:
    assert amount_minor >= 0 and currency_code, (amount_minor, currency_code)
    row: InvoiceRow = repo.invoices.create(
        invoice_id=new_id("INV"),
        kind=kind,
        issuer_marketplace_id=issuer_id,
        issuer_invoice_id=issuer_invoice_id,
        drawee_member_id=drawee_member_id,
        drawee_purchaser_pseudonym=drawee_purchaser_pseudonym,
        drawee_marketplace_id=drawee_marketplace_id,
        transaction_id=transaction_id,
        mediated_transaction_id=mediated_transaction_id,
        amount_minor=amount_minor,
        currency_code=currency_code,
        status="OPEN" if amount_minor else "PAID",
        issued_at=now,
        due_at=now + datetime.timedelta(days=terms_days),
        paid_at=None if amount_minor else now,
    )
    return row


def apply_payment(
    repo: MarketplaceRepository,
    invoice: InvoiceRow,
    amount_minor: int,
    currency_code: str,
    paid_at: datetime.datetime,
    now: datetime.datetime,
) -> InvoiceRow:
    """Records a payment on an invoice; a purchaser's late payment goes on its record."""
    check_amount("amount.amount_minor", amount_minor)
    if currency_code != invoice.currency_code:
        raise invalid("amount.currency_code", f"must be the invoice's {invoice.currency_code}")
    if paid_at > now + PAYMENT_CLOCK_SKEW:
        raise invalid("paid_at", "must not be in the future")
    if paid_at < invoice.issued_at:
        raise invalid("paid_at", "must not be before the invoice was issued")
    if invoice.status != "OPEN":
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"invoice {invoice.invoice_id} is {invoice.status}; it takes no payment",
        )
    if invoice.paid_amount_minor + amount_minor > invoice.amount_minor:
        raise invalid(
            "amount.amount_minor",
            f"exceeds the {invoice.amount_minor - invoice.paid_amount_minor} still due",
        )
    invoice.paid_amount_minor += amount_minor
    if invoice.paid_amount_minor == invoice.amount_minor:
        invoice.status, invoice.paid_at = "PAID", paid_at
    invoice.save()
    if invoice.drawee_member_id and paid_at > invoice.due_at:
        record_delay_once(repo, invoice, paid_at)
    return invoice


def record_delay_once(
    repo: MarketplaceRepository, invoice: InvoiceRow, paid_at: datetime.datetime
) -> None:
    """One payment delay per invoice, however many late instalments pay it."""
    detail = f"invoice {invoice.invoice_id} paid after its due date"
    history = repo.history
    if history.get_or_none((history.item == "PAYMENT_DELAYS") & (history.detail == detail)):
        return
    credit.record_event(
        repo, invoice.drawee_member_id, "PAYMENT_DELAYS", invoice.transaction_id, detail, paid_at
    )


def get_invoice(repo: MarketplaceRepository, invoice_id: str) -> InvoiceRow:
    row: InvoiceRow | None = statements.find(repo.invoices, invoice_id=invoice_id)
    if row is None:
        raise DomainError(ErrorKind.NOT_FOUND, "INVOICE_NOT_FOUND", f"no invoice {invoice_id!r}")
    return row


def expire_estimates(repo: MarketplaceRepository, now: datetime.datetime, limit: int) -> int:
    """Moves estimates past their validity to ESTIMATE_EXPIRED, on either side; returns how
    many.

    The supplier refuses any reply after ``valid_until``, so both sides reach the same end
    without a message. The requester leaves a transaction alone while a reply to its
    partner is still being delivered: the partner may have taken it in time.
    """
    expired = 0
    ours, theirs, calls = repo.transactions, repo.supplied, repo.partner_calls
    busy = calls.select(calls.transaction_id).where(calls.status == "PENDING")
    candidates: list[Any] = [
        *ours.select()
        .where((ours.state == "ESTIMATE_PENDING") & ours.transaction_id.not_in(busy))
        .order_by(ours.updated_at)
        .limit(limit),
        *theirs.select()
        .where(theirs.state == "ESTIMATE_PENDING")
        .order_by(theirs.updated_at)
        .limit(limit),
    ]
    for row in candidates:
        if (
            row.estimate
            and pb.Estimate.FromString(bytes(row.estimate)).valid_until.ToDatetime() < now
        ):
            save(row, now, state="ESTIMATE_EXPIRED")
            expired += 1
    return expired
