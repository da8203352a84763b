"""The agency's billing run: pending charges become billed (and decide how a later
cancellation is handled: stop the billing, or credit it back)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from nodes.settlement import members, notices
from storage.common.database import locked
from storage.common.models import utc_now
from storage.settlement.models import SettlementOrderRow
from storage.settlement.repository import SettlementRepository

MAX_ORDERS_PER_RUN = 1_000


@dataclass(frozen=True)
class BillingRun:
    """What one run billed: the orders, and the total per currency."""

    orders: list[SettlementOrderRow]
    totals_minor: dict[str, int]


def run_billing(
    repo: SettlementRepository, ordered_before: datetime.datetime | None, max_orders: int
) -> BillingRun:
    """Posts approved, not yet billed orders recorded before the cutoff, oldest first.

    Orders with a cancellation waiting for its verification are left alone: the decision
    reserved for them (stop the billing) must stay true.
    """
    cutoff = ordered_before or utc_now()
    limit = min(max_orders or MAX_ORDERS_PER_RUN, MAX_ORDERS_PER_RUN)
    orders, cancellations = repo.orders, repo.cancellations
    reserved = cancellations.select(cancellations.order_number)
    due = list(
        locked(orders.select())
        .where(
            (orders.billing_state == "NOT_YET_BILLED")
            & (orders.created_at < cutoff)
            & orders.order_number.not_in(reserved)
        )
        .order_by(orders.created_at)
        .limit(limit)
    )
    now = utc_now()
    totals: dict[str, int] = {}
    for order in due:
        members.set_billing_state(repo, order, "BILLED")
        order.billed_at = now
        order.updated_at = now
        order.save()
        totals[order.currency_code] = totals.get(order.currency_code, 0) + order.amount_minor
        notices.add_notice(
            repo,
            member_id=order.member_id,
            kind="ORDER_BILLED",
            order_number=order.order_number,
            amount_minor=order.amount_minor,
            currency_code=order.currency_code,
            message=f"Order {order.order_number} was posted to your bill",
            payload=None,
        )
    return BillingRun(due, totals)
