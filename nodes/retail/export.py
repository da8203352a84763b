"""The shop's records of flows for ExportFlowRecords: its orders and their cancellations.

Every event is a message the shop received or a step it took itself, at the time it stored;
the other nodes export the messages they received, so the network's records together give
each flow's message sequence without counting a message twice.
"""

from __future__ import annotations

from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.common.convert import naive_utc
from storage.common import statements
from storage.retail.models import SalesRecordRow, ShopOrderRow
from storage.retail.repository import RetailRepository

ORDER_STATES = {
    "PENDING": fx.PENDING,
    "CANCELLING": fx.COMPLETED,
    "COMPLETED": fx.COMPLETED,
    "CANCELLED": fx.CANCELLED,
    "FAILED": fx.FAILED,
    # Refused before the billing search left: no other node holds anything.
    "DECLINED": fx.FAILED,
    # Refused after it may have left: voided at approval and the agency, or being voided.
    "VOIDING": fx.VOIDING,
    "VOIDED": fx.VOIDED,
}
REFUSED_STATUSES = ("FAILED", "DECLINED", "VOIDING", "VOIDED")
REFUSAL_DETAILS = {
    "DECLINED": "refused before the billing search left; no other node holds it",
    "VOIDING": "refused after the billing search; voiding at approval and the agency",
    "VOIDED": "refused after the billing search; voided at approval and the agency",
}
# A shop order's cancellation: cancel_step as the cancellation flow stores it.
CANCELLATION_STATES = {"request": fx.CANCELLING, "record": fx.CANCELLING, "done": fx.CANCELLED}
RETAIL_ROLE = types_pb2.ROLE_RETAIL
SHOP = "suretynet.retail.v1.ShopService/"
ADMIN = "suretynet.retail.v1.RetailAdminService/"


def sections(repo: RetailRepository, shop_id: str) -> list[fx.Section]:
    """The shop's exported tables, in a fixed order (page tokens depend on it)."""
    orders = repo.orders

    def sale(row: ShopOrderRow) -> SalesRecordRow | None:
        return statements.find(repo.sales, order_number=row.order_number)

    return [
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_ORDER,
            fx.rows_of(orders.select()),
            orders.order_number,
            lambda row: _order(row, sale(row), shop_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_CANCELLATION,
            fx.rows_of(orders.select().where(orders.cancel_notice.is_null(False))),
            orders.order_number,
            lambda row: _cancellation(row, sale(row), shop_id),
        ),
    ]


def _order(row: ShopOrderRow, sale: SalesRecordRow | None, shop_id: str) -> types_pb2.FlowRecord:
    events = [
        fx.event(
            "order placed",
            row.ordered_at,
            method=SHOP + "PlaceOrder",
            sender="member",
            receiver=shop_id,
            detail=f"request {row.request_id}",
        )
    ]
    if row.status in REFUSED_STATUSES:
        events.append(
            fx.event(
                f"order {row.status.lower()}",
                row.updated_at,
                sender=shop_id,
                refusal_reason=row.decline_reason or "TRANSACTION_DECLINED",
                detail=REFUSAL_DETAILS.get(row.status, ""),
            )
        )
    if row.attempts > 0:
        # attempts counts the failed ones; a flow that went on sent one more.
        in_flight = row.status in ("PENDING", "VOIDING")
        events.append(
            fx.event(
                f"step {row.step} being retried" if in_flight else "finished after retries",
                row.updated_at,
                sender=shop_id,
                detail=f"{row.attempts} failed attempts"
                + (f"; next at {row.next_attempt_at:%H:%M:%S}" if in_flight else ""),
                attempts=row.attempts + (0 if in_flight else 1),
            )
        )
    if sale is not None:
        events.append(
            fx.event(
                "sale recorded",
                sale.recorded_at,
                sender=shop_id,
                detail=f"transaction verification {sale.transaction_verification_id}",
            )
        )
    return fx.record(
        entity_id=shop_id,
        role=RETAIL_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_ORDER,
        key=row.order_number,
        order_number=row.order_number,
        stored_state=row.status,
        mapping=ORDER_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events=events,
        counterparts=[row.settlement_agency_id],
        anonymous_user_id=row.anonymous_user_id,
        attributes={
            "step": row.step,
            "request_id": row.request_id,
            "settlement_agency_id": row.settlement_agency_id,
            "decline_reason": row.decline_reason,
            "attempts": str(row.attempts),
            "sales_record": sale.status if sale is not None else "",
            "trace_id": row.trace_id,
        },
    )


def _cancellation(
    row: ShopOrderRow, sale: SalesRecordRow | None, shop_id: str
) -> types_pb2.FlowRecord:
    notice = types_pb2.CancelRequestNotice.FromString(bytes(row.cancel_notice or b""))
    requester = (
        "member"
        if notice.requested_by == types_pb2.CANCEL_REQUESTER_MEMBER
        else f"{shop_id} operator"
    )
    method = (
        SHOP + "RequestCancellation"
        if notice.requested_by == types_pb2.CANCEL_REQUESTER_MEMBER
        else ADMIN + "CancelOrder"
    )
    requested_at = naive_utc(notice.requested_at) if notice.HasField("requested_at") else None
    events = [
        fx.event(
            "cancellation requested",
            requested_at,
            method=method,
            sender=requester,
            receiver=shop_id,
            detail=notice.reason,
        )
    ]
    if sale is not None and sale.cancelled_at is not None:
        events.append(fx.event("sale cancelled", sale.cancelled_at, sender=shop_id))
    return fx.record(
        entity_id=shop_id,
        role=RETAIL_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_CANCELLATION,
        key=notice.cancel_request_id,
        order_number=row.order_number,
        stored_state=row.cancel_step,
        mapping=CANCELLATION_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=requested_at,
        updated_at=row.updated_at,
        events=events,
        counterparts=[row.settlement_agency_id],
        anonymous_user_id=row.anonymous_user_id,
        attributes={
            "procedure": types_pb2.CancelProcedure.Name(notice.procedure).removeprefix(
                "CANCEL_PROCEDURE_"
            ),
            "requested_by": types_pb2.CancelRequester.Name(notice.requested_by).removeprefix(
                "CANCEL_REQUESTER_"
            ),
        },
    )
