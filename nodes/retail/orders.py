"""The shop's orders and sales records: the durable state of each purchase flow.

Every step of the flow writes here before the shop makes its next outgoing call, so a
crashed or interrupted flow is resumed from its last step with the same request IDs.
Nothing here names a member: only the anonymous user ID the member presented.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suretynet.approval.v1 import approval_pb2
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import metrics, resumer, routing
from nodes.common.convert import enum_label, enum_value, money, timestamp
from nodes.common.errors import DomainError, ErrorKind, FieldViolation, Violations, invalid
from nodes.retail import catalog, guarantee_cache
from storage.common import statements
from storage.common.models import utc_now
from storage.retail.models import SalesRecordRow, ShopOrderRow
from storage.retail.repository import RetailRepository

# Steps of the purchase flow, in order; ``done`` once the order is decided. ``void`` is the
# compensation of an order refused or expired after its billing search may have left.
STEPS = ("discover", "bill", "verify", "void", "done")
# Orders the shop still drives (forward, or its void).
OPEN_STATUSES = ("PENDING", "VOIDING")


def new_order_number() -> str:
    """A network-wide unique order number that sorts by creation time."""
    return f"ON-{time.time_ns():020d}-{secrets.token_hex(4)}"


def request_digest(request: retail_pb2.PlaceOrderRequest) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def validate_place_order(
    request: retail_pb2.PlaceOrderRequest, accepted_methods: list[str]
) -> None:
    """Refuses a malformed order request before anything is recorded."""
    violations = Violations()
    violations.require("request_id", request.request_id)
    if not routing.ANONYMOUS_ID_PATTERN.match(request.anonymous_user_id):
        violations.add("anonymous_user_id", routing.ANONYMOUS_ID_DESCRIPTION)
    method = enum_label(types_pb2.PaymentMethod, "PAYMENT_METHOD_", request.payment_method)
    if not method:
        violations.add("payment_method", "is required")
    elif method not in accepted_methods:
        violations.add("payment_method", f"this shop accepts {', '.join(accepted_methods)}")
    if (request.payment_method == types_pb2.PAYMENT_METHOD_INSTALLMENTS) != (
        request.installment_count > 0
    ):
        violations.add("installment_count", "set it for installments only (at least 1)")
    if not 0 <= request.installment_count <= 120:
        violations.add("installment_count", "must be 0 to 120")
    violations.raise_if_any()


def check_delivered_id(repo: RetailRepository, anonymous_user_id: str) -> None:
    """Directory variant (claim 1): the agency must have delivered the ID to this shop."""
    row = statements.find(repo.received_ids, value=anonymous_user_id)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND,
            "ANONYMOUS_ID_INVALID",
            "no settlement agency delivered this anonymous user ID to this shop",
        )
    if utc_now() >= row.expires_at:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ANONYMOUS_ID_EXPIRED",
            "the anonymous user ID has expired; the member must get a new one",
        )


# Step 4 for an order being created: its agency's guarantee, or step 4's refusal (raised).
Route = Callable[[], types_pb2.SettlementAgencyIdentificationGuarantee]


def order_for_request(
    repo: RetailRepository,
    request: retail_pb2.PlaceOrderRequest,
    check_delivered: bool,
    trace_id: str,
    route: Route | None,
) -> tuple[ShopOrderRow, bool, DomainError | None]:
    """The order this request_id names: the one it started before, or a new one; whether
    it is new; and why step 4 failed for a new one.

    Given a ``route`` (step 4 read from the shop's own tables), a new order is stored with
    step 4 done (its agency and address: next, the billing search) in the transaction that
    creates it. When ``route`` raises, or there is none (a directory shop asks approval
    later), the order is stored before step 4; a failure is handed back, for the flow to
    answer as that step's (a refusal, or pending).

    One transaction, so that concurrent duplicates of a request cannot both create an order
    (the loser's insert fails on the unique index and is told REQUEST_IN_PROGRESS).
    """
    row = existing_order(repo, request)
    if row is not None:
        return row, False, None
    if check_delivered:
        check_delivered_id(repo, request.anonymous_user_id)
    lines, amount = catalog.price(repo, list(request.items))
    order = NewOrder(request, lines, amount, trace_id)
    # Counted inside the transaction: a lost race for the request_id (rolled back) over-counts.
    metrics.flow_started("purchase")
    if route is None:
        return create_order(repo, order), True, None
    try:
        guarantee = route()
    except DomainError as failure:
        return create_order(repo, order), True, failure
    return create_order(repo, order, guarantee), True, None


def existing_order(
    repo: RetailRepository, request: retail_pb2.PlaceOrderRequest
) -> ShopOrderRow | None:
    """The order an earlier PlaceOrder with this request_id started, if any."""
    row = statements.find(
        repo.orders, anonymous_user_id=request.anonymous_user_id, request_id=request.request_id
    )
    if row is not None and row.request_sha256 != request_digest(request):
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_REUSED",
            f"request_id {request.request_id!r} was already used for a different order",
            violations=[FieldViolation("request_id", "was already used for a different request")],
        )
    return row


@dataclass(frozen=True)
class NewOrder:
    """A priced order about to start its flow."""

    request: retail_pb2.PlaceOrderRequest
    lines: list[types_pb2.OrderLine]
    amount: types_pb2.Money
    trace_id: str


def create_order(
    repo: RetailRepository,
    order: NewOrder,
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee | None = None,
) -> ShopOrderRow:
    """Records the order (status PENDING) before any outgoing call: at step ``discover``,
    or with step 4 done when its agency's ``guarantee`` was read with it."""
    values = new_order_values(order, utc_now())
    if guarantee is not None:
        values.update(route_values(guarantee))
    row: ShopOrderRow = repo.orders.create(**values)
    return row


def new_order_values(order: NewOrder, now: datetime.datetime) -> dict[str, Any]:
    """The columns of a new order, PENDING at step ``discover`` (also what ``suretynet
    bench`` seeds)."""
    request = order.request
    return {
        "order_number": new_order_number(),
        "request_id": request.request_id,
        "request_sha256": request_digest(request),
        "anonymous_user_id": request.anonymous_user_id,
        "lines": types_pb2.BillingDetails(lines=order.lines).SerializeToString(deterministic=True),
        "amount_minor": order.amount.amount_minor,
        "currency_code": order.amount.currency_code,
        "payment_method": enum_label(
            types_pb2.PaymentMethod, "PAYMENT_METHOD_", request.payment_method
        ),
        "installment_count": request.installment_count,
        "status": "PENDING",
        "step": "discover",
        "settlement_agency_id": "",
        "settlement_address": "",
        "trace_id": order.trace_id,
        "ordered_at": now,
        "created_at": now,
        "updated_at": now,
    }


def lines_of(row: ShopOrderRow) -> list[types_pb2.OrderLine]:
    return list(types_pb2.BillingDetails.FromString(bytes(row.lines)).lines)


def route_values(guarantee: types_pb2.SettlementAgencyIdentificationGuarantee) -> dict[str, Any]:
    """Step 4 done, as an order's columns: the agency and address to bill through; next,
    the billing search."""
    return {
        "settlement_agency_id": guarantee.settlement_agency_id,
        "settlement_address": guarantee_cache.route_of(guarantee),
        "guarantee_registry_serial": guarantee.registry_serial,
        "step": "bill",
    }


def record_route(
    repo: RetailRepository,
    order_number: str,
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
) -> ShopOrderRow:
    """Step 4 done for an order stored before it (see ``route_values``)."""
    row = get_order(repo, order_number)
    for column, value in route_values(guarantee).items():
        setattr(row, column, value)
    row.updated_at = utc_now()
    row.save()
    return row


def billing_search_request(
    row: ShopOrderRow, identification: types_pb2.RetailEntityIdentification
) -> settlement_pb2.SearchBillingAgencyIdentificationRequest:
    """Step 5's message, rebuilt identically on every retry from the recorded order."""
    return settlement_pb2.SearchBillingAgencyIdentificationRequest(
        request_id=f"{row.order_number}-billing",
        billing_agency_identification_search=settlement_pb2.BillingAgencyIdentificationSearch(
            retail_entity=identification,
            anonymous_user_id=row.anonymous_user_id,
            lines=lines_of(row),
            amount=money(row.amount_minor, row.currency_code),
            order_number=row.order_number,
            payment_method=enum_value(
                types_pb2.PaymentMethod, "PAYMENT_METHOD_", row.payment_method
            ),
            installment_count=row.installment_count,
            guarantee_registry_serial=row.guarantee_registry_serial,
            ordered_at=timestamp(row.ordered_at),
        ),
    )


def record_completion_report(
    repo: RetailRepository, order_number: str, report: settlement_pb2.TransactionCompletionReport
) -> ShopOrderRow:
    """Step 8 received: keep the completion report; next, the verification request."""
    row = get_order(repo, order_number)
    details = report.billing_details
    if (
        report.order_number != row.order_number
        or details.amount.amount_minor != row.amount_minor
        or details.amount.currency_code != row.currency_code
        or details.settlement_agency_id != row.settlement_agency_id
        or report.result != types_pb2.TRANSACTION_RESULT_APPROVED
    ):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_MISMATCH",
            "the completion report does not match the order the shop sent",
        )
    row.completion_report = report.SerializeToString(deterministic=True)
    row.step = "verify"
    row.updated_at = utc_now()
    row.save()
    return row


def verification_request(
    row: ShopOrderRow, retail_entity_id: str
) -> approval_pb2.VerifyTransactionRequest:
    """Step 10's message, rebuilt identically on every retry."""
    return approval_pb2.VerifyTransactionRequest(
        request_id=f"{row.order_number}-verify",
        transaction_verification_request=approval_pb2.TransactionVerificationRequest(
            order_number=row.order_number,
            retail_entity_id=retail_entity_id,
            settlement_agency_id=row.settlement_agency_id,
            amount=money(row.amount_minor, row.currency_code),
        ),
    )


def complete(
    repo: RetailRepository, order_number: str, verification: approval_pb2.TransactionVerification
) -> ShopOrderRow:
    """Step 11: the verified order goes into the sales record database, atomically."""
    row = get_order(repo, order_number)
    assert row.completion_report is not None, "verification follows the completion report"
    report = settlement_pb2.TransactionCompletionReport.FromString(bytes(row.completion_report))
    now = utc_now()
    statements.insert_or_ignore(repo.sales, **sale_values(row, report, verification, now))
    row.transaction_verification_id = verification.transaction_verification_id
    row.status = "COMPLETED"
    row.step = "done"
    row.updated_at = now
    row.response = retail_pb2.PlaceOrderResponse(order=order_to_proto(row)).SerializeToString(
        deterministic=True
    )
    row.save()
    return row


def sale_values(
    row: ShopOrderRow,
    report: settlement_pb2.TransactionCompletionReport,
    verification: approval_pb2.TransactionVerification,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The columns of a verified order's sales record (also what ``suretynet bench`` seeds)."""
    return {
        "order_number": row.order_number,
        "anonymous_user_id": row.anonymous_user_id,
        "settlement_agency_id": row.settlement_agency_id,
        "guarantee_registry_serial": row.guarantee_registry_serial,
        "billing_details": report.billing_details.SerializeToString(deterministic=True),
        "amount_minor": row.amount_minor,
        "currency_code": row.currency_code,
        "transaction_verification_id": verification.transaction_verification_id,
        "trace_id": row.trace_id,
        "recorded_at": now,
    }


def refuse(repo: RetailRepository, order_number: str, kind: ErrorKind, reason: str) -> ShopOrderRow:
    """The flow cannot finish: final for the member, and never deleted.

    Before the billing search left (step ``discover``) no other node holds anything: the
    order is DECLINED. After it may have left, the agency may hold the order and its credit:
    the order is VOIDING until approval and the agency have recorded its void.
    """
    row = get_order(repo, order_number)
    if row.status != "PENDING":
        return row
    before_billing = row.step == "discover"
    row.status = "DECLINED" if before_billing else "VOIDING"
    row.step = "done" if before_billing else "void"
    row.decline_reason = reason
    row.decline_code = kind.value
    row.attempts = 0
    row.next_attempt_at = utc_now()
    row.updated_at = utc_now()
    row.save()
    return row


def void_request_ids(row: ShopOrderRow) -> tuple[str, str]:
    """The request IDs of the void at approval and at the agency, the same on every retry."""
    return f"{row.order_number}-void-approval", f"{row.order_number}-void"


def mark_voided(repo: RetailRepository, order_number: str) -> ShopOrderRow:
    """Approval and the agency recorded the void: the compensation is complete."""
    row = get_order(repo, order_number)
    row.status = "VOIDED"
    row.step = "done"
    row.updated_at = utc_now()
    row.save()
    return row


def reroute(
    repo: RetailRepository,
    order_number: str,
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
) -> ShopOrderRow:
    """The agency's current address, if it moved; never another agency (one order number
    is billed by one agency)."""
    row = get_order(repo, order_number)
    if guarantee.settlement_agency_id == row.settlement_agency_id and (
        guarantee_cache.route_of(guarantee) != row.settlement_address
    ):
        row.settlement_address = guarantee_cache.route_of(guarantee)
        row.guarantee_registry_serial = guarantee.registry_serial
        row.updated_at = utc_now()
        row.save()
    return row


def postpone(repo: RetailRepository, order_number: str, wait_s: float | None) -> None:
    """When the resumer next drives the order: a failed attempt backs off (``wait_s`` None),
    a peer's backoff just waits."""
    resumer.postpone(
        get_order(repo, order_number), "attempts", "next_attempt_at", wait_s, utc_now()
    )


def due(repo: RetailRepository, now: datetime.datetime, limit: int) -> list[ShopOrderRow]:
    """Open orders whose next attempt is due, the longest-waiting first."""
    orders = repo.orders
    return list(
        orders.select(
            orders.order_number,
            orders.status,
            orders.step,
            orders.settlement_agency_id,
            orders.trace_id,
            orders.next_attempt_at,
        )
        .where(orders.status.in_(OPEN_STATUSES) & (orders.next_attempt_at <= now))
        .order_by(orders.next_attempt_at)
        .limit(limit)
    )


def claim(repo: RetailRepository, flow: resumer.DueFlow) -> bool:
    """Takes an open order's next attempt for this process (resumer.claim_row)."""
    orders = repo.orders
    return resumer.claim_row(
        orders, orders.order_number, flow.key, orders.next_attempt_at, flow.due_at, utc_now()
    )


def get_order(repo: RetailRepository, order_number: str) -> ShopOrderRow:
    row = repo.order(order_number)
    if row is None:
        raise DomainError(ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no order {order_number!r}")
    return row


def buyers_order(repo: RetailRepository, order_number: str, anonymous_user_id: str) -> ShopOrderRow:
    """The order, if the caller presents the anonymous user ID it was placed with."""
    if not order_number:
        raise invalid("order_number", "is required", reason="FIELD_REQUIRED")
    row = repo.order(order_number)
    if row is None or row.anonymous_user_id != anonymous_user_id:
        # The same answer for "no such order" and "not yours": order numbers cannot be probed.
        raise DomainError(ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no order {order_number!r}")
    return row


def order_to_proto(row: ShopOrderRow) -> retail_pb2.ShopOrder:
    return retail_pb2.ShopOrder(
        order_number=row.order_number,
        status=enum_value(retail_pb2.OrderStatus, "ORDER_STATUS_", row.status),
        anonymous_user_id=row.anonymous_user_id,
        lines=lines_of(row),
        amount=money(row.amount_minor, row.currency_code),
        payment_method=enum_value(types_pb2.PaymentMethod, "PAYMENT_METHOD_", row.payment_method),
        settlement_agency_id=row.settlement_agency_id,
        decline_reason=_error_reason(row.decline_reason),
        transaction_verification_id=row.transaction_verification_id,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        trace_id=row.trace_id,
    )


def _error_reason(name: str) -> types_pb2.ErrorReason.ValueType:
    """The ErrorReason enum value of a stored wire reason ("" stays unset)."""
    value: types_pb2.ErrorReason.ValueType = enum_value(
        types_pb2.ErrorReason, "ERROR_REASON_", name
    )
    return value


def sales_record_to_proto(row: SalesRecordRow) -> retail_pb2.SalesRecord:
    record = retail_pb2.SalesRecord(
        order_number=row.order_number,
        anonymous_user_id=row.anonymous_user_id,
        settlement_agency_id=row.settlement_agency_id,
        guarantee_registry_serial=row.guarantee_registry_serial,
        billing_details=types_pb2.BillingDetails.FromString(bytes(row.billing_details)),
        transaction_verification_id=row.transaction_verification_id,
        status=enum_value(retail_pb2.OrderStatus, "ORDER_STATUS_", row.status),
        recorded_at=timestamp(row.recorded_at),
        cancelled_at=timestamp(row.cancelled_at),
        trace_id=row.trace_id,
    )
    if row.cancel_process_result:
        record.cancel_process_result.ParseFromString(bytes(row.cancel_process_result))
    if row.cancel_verification:
        record.cancel_verification.ParseFromString(bytes(row.cancel_verification))
    return record


def get_sales_record(repo: RetailRepository, order_number: str) -> SalesRecordRow:
    row = statements.find(repo.sales, order_number=order_number)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no sales record for {order_number!r}"
        )
    return row
