"""The settlement agency's part of a purchase (claim 1, flow steps 5-9).

On the shop's billing agency identification search the agency
- checks the search is complete and names the calling shop (step 5);
- compares approval's retail entity identification guarantee with it (steps 6-7);
- resolves the anonymous user ID to the member, checks the member's credit, and in one
  transaction stores the order with its billing details and the member's transaction
  completion notice (steps 7-8);
- files the transaction report with verification (step 9) and answers the shop with the
  transaction completion report (step 8).
A refusal stores nothing: no order, no notice, no report.

The first answer stands: a search for an order number the agency already recorded is
answered from that record before any check is re-run (a shop suspended since, or a member
whose credit changed, must not turn a recorded purchase into a refusal that the shop would
then forget). A voided order number is refused with ORDER_VOIDED, forever.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass

from suretynet.approval.v1 import approval_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2

from nodes.common import disclosures, resumer, voids
from nodes.common.convert import enum_label, enum_value, money, timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import EntityIdentity
from nodes.settlement import members, notices
from storage.common import statements
from storage.common.models import OrderVoid, utc_now
from storage.settlement.models import SettlementOrderRow
from storage.settlement.repository import SettlementRepository

FIELD = "billing_agency_identification_search."
MAX_LINES = 100


def validate_search(
    search: settlement_pb2.BillingAgencyIdentificationSearch, caller: EntityIdentity
) -> None:
    """Refuses an incomplete search, bad amounts, or a shop naming another shop than itself."""
    violations = Violations()
    violations.require(
        FIELD + "retail_entity.retail_entity_id", search.retail_entity.retail_entity_id
    )
    violations.require(FIELD + "anonymous_user_id", search.anonymous_user_id)
    violations.require(FIELD + "order_number", search.order_number)
    if not search.lines:
        violations.add(FIELD + "lines", "at least one order line is required")
    if len(search.lines) > MAX_LINES:
        violations.add(FIELD + "lines", f"at most {MAX_LINES} lines")
    currency = search.amount.currency_code
    if len(currency) != 3:
        violations.add(FIELD + "amount.currency_code", "must be an ISO 4217 code")
    if search.amount.amount_minor <= 0:
        violations.add(FIELD + "amount.amount_minor", "must be positive")
    total = 0
    for index, line in enumerate(search.lines):
        path = f"{FIELD}lines[{index}]."
        if line.quantity < 1:
            violations.add(path + "quantity", "must be at least 1")
        if line.line_amount.currency_code != currency or line.unit_price.currency_code != currency:
            violations.add(path + "line_amount.currency_code", "must be the order's currency")
        if line.line_amount.amount_minor != line.quantity * line.unit_price.amount_minor:
            violations.add(path + "line_amount.amount_minor", "must be quantity x unit_price")
        total += line.line_amount.amount_minor
    if search.lines and total != search.amount.amount_minor:
        violations.add(FIELD + "amount.amount_minor", "must be the sum of the line amounts")
    if search.payment_method == types_pb2.PAYMENT_METHOD_UNSPECIFIED:
        violations.add(FIELD + "payment_method", "is required")
    if (search.payment_method == types_pb2.PAYMENT_METHOD_INSTALLMENTS) != (
        search.installment_count > 0
    ):
        violations.add(FIELD + "installment_count", "set it for installments only (at least 1)")
    violations.raise_if_any()
    if search.retail_entity.retail_entity_id != caller.entity_id:
        raise DomainError(
            ErrorKind.PERMISSION_DENIED,
            "NOT_OWNER",
            f"{caller.uri} may search only under its own retail entity identification",
        )


def check_guarantee(
    search: settlement_pb2.BillingAgencyIdentificationSearch,
    guarantee: approval_pb2.RetailEntityIdentificationGuarantee,
) -> None:
    """Step 7's verification of approval's answer against the shop's identification."""
    if guarantee.status != types_pb2.ENTITY_STATUS_ACTIVE:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ENTITY_SUSPENDED",
            f"retail entity {guarantee.retail_entity_id} is not active",
            metadata={"entity_id": guarantee.retail_entity_id},
        )
    if not guarantee.identification_matches:
        fields = ",".join(guarantee.mismatched_fields) or "unknown"
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "GUARANTEE_MISMATCH",
            "the shop identification differs from approval's retail entity identification "
            f"in {fields}",
            metadata={"mismatched_fields": fields},
        )
    if search.payment_method not in guarantee.accepted_payment_methods:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_DECLINED",
            "the shop has not registered this payment method with approval",
        )


def search_digest(search: settlement_pb2.BillingAgencyIdentificationSearch) -> str:
    return hashlib.sha256(search.SerializeToString(deterministic=True)).hexdigest()


def billing_details(
    search: settlement_pb2.BillingAgencyIdentificationSearch, agency_id: str
) -> types_pb2.BillingDetails:
    """The billing details copied into the order, the completion report and the report."""
    return types_pb2.BillingDetails(
        retail_entity_id=search.retail_entity.retail_entity_id,
        settlement_agency_id=agency_id,
        anonymous_user_id=search.anonymous_user_id,
        lines=search.lines,
        amount=search.amount,
        payment_method=search.payment_method,
        installment_count=search.installment_count,
        ordered_at=search.ordered_at,
    )


@dataclass(frozen=True)
class Purchase:
    """A checked billing search, ready to record: who buys, through which agency, and trace."""

    search: settlement_pb2.BillingAgencyIdentificationSearch
    member_id: str
    agency_id: str
    retail_entity_display_name: str
    trace_id: str


def recorded_order(
    repo: SettlementRepository, search: settlement_pb2.BillingAgencyIdentificationSearch
) -> SettlementOrderRow | None:
    """The order this search already created, if any; ORDER_VOIDED once the shop voided it.

    Another search under the same order number is refused.
    """
    if voids.voided(repo.voids, search.order_number, search.retail_entity.retail_entity_id):
        raise voids.refusal(search.order_number)
    existing = repo.order(search.order_number)
    if existing is None:
        return None
    if existing.request_sha256 != search_digest(search):
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "FIELD_INVALID",
            f"{FIELD}order_number: was already used for a different order",
        )
    return existing


def record_order(repo: SettlementRepository, purchase: Purchase) -> SettlementOrderRow:
    """Checks credit and stores the order and the member's completion notice, atomically.

    Idempotent by order number: the same search again returns the stored order (no second
    credit use); another search under the same order number, or a voided one, is refused.
    """
    search, digest = purchase.search, search_digest(purchase.search)
    existing = recorded_order(repo, search)
    if existing is not None:
        return existing
    # Locked: the credit check and the order it admits must not interleave with another's.
    member = members.get_member(repo, purchase.member_id, lock=True)
    if member.status != "ACTIVE":
        raise DomainError(ErrorKind.FAILED_PRECONDITION, "ENTITY_SUSPENDED", "member is suspended")
    amount = search.amount
    if amount.currency_code != member.currency_code:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_DECLINED",
            f"the member's credit is in {member.currency_code}, the order in {amount.currency_code}",
        )
    if member.credit_used_minor + amount.amount_minor > member.credit_limit_minor:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CREDIT_LIMIT_EXCEEDED",
            "the member's credit limit does not cover the order",
            metadata={"order_number": search.order_number},
        )
    now = utc_now()
    details = billing_details(search, purchase.agency_id)
    notice_id = "tcn-" + secrets.token_hex(8)
    order: SettlementOrderRow = repo.orders.create(
        order_number=search.order_number,
        member_id=member.member_id,
        retail_entity_id=details.retail_entity_id,
        anonymous_user_id=search.anonymous_user_id,
        amount_minor=amount.amount_minor,
        currency_code=amount.currency_code,
        billing_details=details.SerializeToString(deterministic=True),
        request_sha256=digest,
        completion_notice_id=notice_id,
        retail_entity_display_name=purchase.retail_entity_display_name,
        trace_id=purchase.trace_id,
        created_at=now,
        completed_at=now,
        updated_at=now,
    )
    members.hold_credit(repo, member.member_id, order.amount_minor)
    notices.add_notice(
        repo,
        member_id=member.member_id,
        kind="TRANSACTION_COMPLETED",
        order_number=order.order_number,
        amount_minor=order.amount_minor,
        currency_code=order.currency_code,
        message=f"Order {order.order_number} at {purchase.retail_entity_display_name} approved",
        # The stored payload carries the sequence too, so listing and streaming agree.
        payload=lambda sequence: completion_notice(order, sequence=sequence),
        notice_id=notice_id,
    )
    return order


def void_order(repo: SettlementRepository, order: SettlementOrderRow, reason: str) -> int:
    """Voids a recorded order (the shop's compensation); returns the amount credited back.

    Not yet billed: the credit hold is released and nothing will be billed. Already billed
    (a billing run came first): the amount is credited back. Idempotent: voiding a voided
    order changes nothing. A cancelled order is settled by its cancellation instead.
    """
    if order.billing_state == "VOIDED":
        return 0
    cancellations = repo.cancellations
    if statements.find(cancellations, order_number=order.order_number) is not None:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ORDER_ALREADY_CANCELLED",
            f"order {order.order_number} is being cancelled; it cannot be voided",
            metadata={"order_number": order.order_number},
        )
    credited_back = order.amount_minor if order.billing_state == "BILLED" else 0
    now = utc_now()
    members.set_billing_state(repo, order, "VOIDED")
    order.updated_at = now
    order.save()
    notices.add_notice(
        repo,
        member_id=order.member_id,
        kind="ORDER_VOIDED",
        order_number=order.order_number,
        amount_minor=order.amount_minor,
        currency_code=order.currency_code,
        message=f"Order {order.order_number} could not be finished by the shop ({reason}); "
        + ("the amount was credited back" if credited_back else "nothing will be billed"),
        payload=None,
    )
    return credited_back


def void_response(
    void: OrderVoid, order: SettlementOrderRow | None, credited_back_minor: int
) -> settlement_pb2.VoidOrderResponse:
    return settlement_pb2.VoidOrderResponse(
        order_number=void.order_number,
        order_existed=order is not None,
        credited_back=money(credited_back_minor, order.currency_code if order else ""),
        voided_at=timestamp(void.voided_at),
    )


def details_of(order: SettlementOrderRow) -> types_pb2.BillingDetails:
    return types_pb2.BillingDetails.FromString(bytes(order.billing_details))


def completion_notice(
    order: SettlementOrderRow, sequence: int
) -> settlement_pb2.TransactionCompletionNotice:
    """The transaction completion notice to the member (step 7)."""
    details = details_of(order)
    return settlement_pb2.TransactionCompletionNotice(
        notice_id=order.completion_notice_id,
        sequence=sequence,
        order_number=order.order_number,
        retail_entity_id=order.retail_entity_id,
        retail_entity_display_name=order.retail_entity_display_name,
        lines=details.lines,
        amount=details.amount,
        payment_method=details.payment_method,
        result=_result(order),
        anonymous_user_id=order.anonymous_user_id,
        issued_at=timestamp(order.completed_at),
    )


def _result(order: SettlementOrderRow) -> types_pb2.TransactionResult.ValueType:
    result: types_pb2.TransactionResult.ValueType = enum_value(
        types_pb2.TransactionResult, "TRANSACTION_RESULT_", order.result
    )
    return result


def transaction_report(order: SettlementOrderRow) -> verification_pb2.TransactionReport:
    """The transaction report to verification (step 9): order number and billing details."""
    return verification_pb2.TransactionReport(
        order_number=order.order_number,
        billing_details=details_of(order),
        result=_result(order),
        completed_at=timestamp(order.completed_at),
    )


def completion_report(order: SettlementOrderRow) -> settlement_pb2.TransactionCompletionReport:
    """The transaction completion report to the shop (step 8)."""
    return settlement_pb2.TransactionCompletionReport(
        order_number=order.order_number,
        billing_details=details_of(order),
        result=_result(order),
        transaction_completion_notice_id=order.completion_notice_id,
        completed_at=timestamp(order.completed_at),
    )


def postpone_delivery(
    repo: SettlementRepository, kind: str, order_number: str, wait_s: float | None
) -> None:
    """Schedules the next delivery of an order's report (``kind`` "report") or its void.

    ``wait_s`` None counts a failed attempt and backs off exponentially; a number waits that
    long without counting one.
    """
    if kind == "report":
        order = get_order(repo, order_number)
        resumer.postpone(order, "report_attempts", "next_report_at", wait_s, utc_now())
    else:
        void = repo.voids.get_by_id(order_number)
        resumer.postpone(void, "forward_attempts", "next_forward_at", wait_s, utc_now())


def undelivered(
    repo: SettlementRepository, now: datetime.datetime, cutoff: datetime.datetime, limit: int
) -> tuple[list[SettlementOrderRow], list[OrderVoid]]:
    """What the agency's resumer delivers (the longest-waiting first, at most ``limit`` of
    each): transaction reports verification has not acknowledged, and voids not forwarded
    to it, due by ``now`` and older than ``cutoff``.

    Each is read by a partial index holding only what is still undelivered (settlement
    v0005), so a pass costs the same after a million orders as after ten.
    """
    orders, void_rows = repo.orders, repo.voids
    reports = (
        orders.select(
            orders.order_number, orders.trace_id, orders.created_at, orders.next_report_at
        )
        .where(
            orders.reported_at.is_null()
            & (orders.next_report_at <= now)
            & (orders.created_at < cutoff)
        )
        .order_by(orders.next_report_at)
        .limit(limit)
    )
    pending_voids = (
        void_rows.select(void_rows.order_number, void_rows.voided_at, void_rows.next_forward_at)
        .where(
            void_rows.forwarded_at.is_null()
            & (void_rows.next_forward_at <= now)
            & (void_rows.voided_at < cutoff)
        )
        .order_by(void_rows.next_forward_at)
        .limit(limit)
    )
    return list(reports), list(pending_voids)


MARK_REPORTED: statements.Statement[SettlementOrderRow] = statements.Statement(
    lambda t, p: t.update(reported_at=p.of(t.reported_at)).where(
        (t.order_number == p.order_number) & t.reported_at.is_null()
    )
)


def mark_reported(repo: SettlementRepository, order_number: str) -> None:
    MARK_REPORTED.execute(repo.orders, order_number=order_number, reported_at=utc_now())


def order_to_proto(order: SettlementOrderRow) -> settlement_pb2.SettlementOrder:
    """The agency's full record of an order, with the member (admin only)."""
    return settlement_pb2.SettlementOrder(
        order_number=order.order_number,
        member_id=order.member_id,
        billing_details=details_of(order),
        result=_result(order),
        billing_state=enum_value(
            settlement_pb2.BillingState, "BILLING_STATE_", order.billing_state
        ),
        created_at=timestamp(order.created_at),
        billed_at=timestamp(order.billed_at),
        trace_id=order.trace_id,
    )


def billing_state_label(value: int) -> str:
    return enum_label(settlement_pb2.BillingState, "BILLING_STATE_", value).upper()


def get_order(
    repo: SettlementRepository, order_number: str, *, lock: bool = False
) -> SettlementOrderRow:
    """The order, or ORDER_NOT_FOUND; ``lock`` before deciding on its billing state."""
    order = repo.order(order_number, lock=lock)
    if order is None:
        raise DomainError(ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no order {order_number!r}")
    return order


def record_disclosures(
    repo: SettlementRepository, order: SettlementOrderRow, shop: EntityIdentity
) -> None:
    """What the purchase disclosed about the member: the completion report to the shop and
    the transaction report to verification (once per order, however often it is answered)."""
    table = repo.data_disclosures
    if statements.find(table, reference=order.order_number, kind="COMPLETION_REPORT"):
        return
    amount = f"{order.amount_minor} {order.currency_code}"
    data = (
        f"order {order.order_number}: {amount}, billing details under anonymous user ID "
        f"{order.anonymous_user_id} (never your name or member ID)"
    )
    disclosures.record(
        table,
        member_id=order.member_id,
        kind="COMPLETION_REPORT",
        recipient=shop.uri,
        data=data,
        purpose="transaction completion report for your purchase at the shop",
        reference=order.order_number,
    )
    disclosures.record(
        table,
        member_id=order.member_id,
        kind="TRANSACTION_REPORT",
        recipient="the credit guarantee institution (its verification server)",
        data=data,
        purpose="transaction report the institution verifies the shop's request against",
        reference=order.order_number,
    )
