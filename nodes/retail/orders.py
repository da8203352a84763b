"""The shop's orders and sales records: the durable state of each purchase flow.

Every step of the flow writes here before the shop makes its next outgoing call, so a
crashed or interrupted flow is resumed from its last step with the same request IDs.
Nothing here names a member: only the anonymous user ID the member presented.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from suretynet.approval.v1 import approval_pb2
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.convert import enum_label, enum_value, money, timestamp
from nodes.common.errors import DomainError, ErrorKind, FieldViolation, Violations, invalid
from storage.common.models import utc_now
from storage.retail.models import SalesRecordRow, ShopOrderRow
from storage.retail.repository import RetailRepository

ANONYMOUS_ID_PATTERN = re.compile(r"^[0-9]{8,32}$")
# Steps of the purchase flow, in order; ``done`` once the order is decided.
STEPS = ("discover", "bill", "verify", "done")


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
    if not ANONYMOUS_ID_PATTERN.match(request.anonymous_user_id):
        violations.add("anonymous_user_id", "must be the 8-32 digit ID from the settlement agency")
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
    row = repo.received_ids.get_or_none(repo.received_ids.value == anonymous_user_id)
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


def existing_order(
    repo: RetailRepository, request: retail_pb2.PlaceOrderRequest
) -> ShopOrderRow | None:
    """The order an earlier PlaceOrder with this request_id started, if any."""
    table = repo.orders
    row = table.get_or_none(
        (table.anonymous_user_id == request.anonymous_user_id)
        & (table.request_id == request.request_id)
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


def create_order(repo: RetailRepository, order: NewOrder) -> ShopOrderRow:
    """Records the order (status PENDING, step ``discover``) before any outgoing call."""
    request = order.request
    now = utc_now()
    holder = types_pb2.BillingDetails(lines=order.lines)
    row: ShopOrderRow = repo.orders.create(
        order_number=new_order_number(),
        request_id=request.request_id,
        request_sha256=request_digest(request),
        anonymous_user_id=request.anonymous_user_id,
        lines=holder.SerializeToString(deterministic=True),
        amount_minor=order.amount.amount_minor,
        currency_code=order.amount.currency_code,
        payment_method=enum_label(
            types_pb2.PaymentMethod, "PAYMENT_METHOD_", request.payment_method
        ),
        installment_count=request.installment_count,
        status="PENDING",
        step="discover",
        settlement_agency_id="",
        settlement_address="",
        trace_id=order.trace_id,
        ordered_at=now,
        created_at=now,
        updated_at=now,
    )
    return row


def lines_of(row: ShopOrderRow) -> list[types_pb2.OrderLine]:
    return list(types_pb2.BillingDetails.FromString(bytes(row.lines)).lines)


def record_route(
    repo: RetailRepository,
    order_number: str,
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
) -> ShopOrderRow:
    """Step 4 done: the agency and address to bill through; next, the billing search."""
    row = get_order(repo, order_number)
    row.settlement_agency_id = guarantee.settlement_agency_id
    row.settlement_address = guarantee.address
    row.guarantee_registry_serial = guarantee.registry_serial
    row.step = "bill"
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
    repo.sales.insert(
        order_number=row.order_number,
        anonymous_user_id=row.anonymous_user_id,
        settlement_agency_id=row.settlement_agency_id,
        guarantee_registry_serial=row.guarantee_registry_serial,
        billing_details=report.billing_details.SerializeToString(deterministic=True),
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        transaction_verification_id=verification.transaction_verification_id,
        trace_id=row.trace_id,
        recorded_at=now,
    ).on_conflict_ignore().execute()
    row.transaction_verification_id = verification.transaction_verification_id
    row.status = "COMPLETED"
    row.step = "done"
    row.updated_at = now
    row.response = retail_pb2.PlaceOrderResponse(order=order_to_proto(row)).SerializeToString(
        deterministic=True
    )
    row.save()
    return row


def fail(repo: RetailRepository, order_number: str, reason: str) -> ShopOrderRow:
    """A refusal after the agency billed (verification refused): the order FAILED."""
    row = get_order(repo, order_number)
    row.status = "FAILED"
    row.step = "done"
    row.decline_reason = reason
    row.updated_at = utc_now()
    row.save()
    return row


def discard(repo: RetailRepository, order_number: str) -> None:
    """A refusal before the agency billed: no order is left behind (no partial records)."""
    repo.orders.delete().where(repo.orders.order_number == order_number).execute()


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


def unfinished(repo: RetailRepository, older_than: datetime.datetime, limit: int) -> list[str]:
    """Orders whose flow stopped midway (a crash, a peer down), oldest first."""
    orders = repo.orders
    return [
        row.order_number
        for row in orders.select(orders.order_number)
        .where((orders.status == "PENDING") & (orders.updated_at < older_than))
        .order_by(orders.updated_at)
        .limit(limit)
    ]


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
    row = repo.sales.get_or_none(repo.sales.order_number == order_number)
    if row is None:
        raise DomainError(
            ErrorKind.NOT_FOUND, "ORDER_NOT_FOUND", f"no sales record for {order_number!r}"
        )
    return row
