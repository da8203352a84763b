"""Voids: the purchase saga's compensating step, recorded the same way at every node.

A shop that cannot finish an order after its billing search may have reached the agency
voids it: approval and the agency each record an ``OrderVoid`` for the order number
(the agency then tells verification, which records one too). The record is kept whether or
not the node holds the order, so that a request for the order arriving after its void (a
late retry, a delayed duplicate) is refused or stored already voided, never acted on.

A void names the shop that sold the order: only that shop may void it, and a void recorded
by one shop never affects another shop's order that happens to carry the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodes.common.errors import DomainError, ErrorKind, Violations
from storage.common import statements
from storage.common.models import OrderVoid, utc_now

MAX_ORDER_NUMBER_LENGTH = 64


@dataclass(frozen=True)
class Void:
    """A void to record: which order, sold by which shop, routed to which agency, and why."""

    order_number: str
    retail_entity_id: str
    settlement_agency_id: str
    reason: str


def validate(order_number: str, reason: str, *, field_prefix: str = "") -> None:
    """Refuses a void without an order number or a reason."""
    violations = Violations()
    violations.require(field_prefix + "order_number", order_number)
    if len(order_number) > MAX_ORDER_NUMBER_LENGTH:
        violations.add(
            field_prefix + "order_number", f"at most {MAX_ORDER_NUMBER_LENGTH} characters"
        )
    violations.require(field_prefix + "reason", reason)
    violations.raise_if_any()


def voided(table: type[OrderVoid], order_number: str, retail_entity_id: str) -> OrderVoid | None:
    """The void recorded for this shop's order, if any."""
    return statements.find(table, order_number=order_number, retail_entity_id=retail_entity_id)


def record(table: type[OrderVoid], void: Void) -> OrderVoid:
    """Records the void once; a repeated void of the same order returns the first record.

    Must run inside the transaction that applies the void's effect, so that the record and
    the effect commit together.
    """
    existing: OrderVoid | None = statements.find(table, order_number=void.order_number)
    if existing is not None:
        if existing.retail_entity_id != void.retail_entity_id:
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "NOT_OWNER",
                f"order {void.order_number} was not sold by {void.retail_entity_id}",
            )
        return existing
    row: OrderVoid = table.create(
        order_number=void.order_number,
        retail_entity_id=void.retail_entity_id,
        settlement_agency_id=void.settlement_agency_id,
        reason=void.reason,
        voided_at=utc_now(),
    )
    return row


def refusal(order_number: str) -> DomainError:
    """What a request for a voided order gets: final, nothing is billed."""
    return DomainError(
        ErrorKind.FAILED_PRECONDITION,
        "ORDER_VOIDED",
        f"order {order_number} was voided; nothing is billed for it",
        metadata={"order_number": order_number},
    )
