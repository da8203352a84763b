"""The agency's records of flows for ExportFlowRecords: orders, cancellations, member credit.

The agency is the one node that knows the member behind an anonymous user ID, so its
records carry the member ID (to its own operators only). Member credit is the credit in use
exactly as the agency's credit check computes it (``members.credit_used``), so that
reconciliation can compare it with the member's open orders.
"""

from __future__ import annotations

from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.common.convert import money
from nodes.settlement import members
from storage.settlement.models import CancellationRow, MemberRow, SettlementOrderRow
from storage.settlement.repository import SettlementRepository

# billing_state -> normalized; an order approved but not yet reported to verification is
# still PENDING (see _order_state).
ORDER_STATES = {
    "NOT_YET_BILLED": fx.COMPLETED,
    "BILLED": fx.COMPLETED,
    "BILLING_STOPPED": fx.CANCELLED,
    "CREDITED_BACK": fx.CANCELLED,
    "VOIDED": fx.VOIDED,
}
CANCELLATION_STATES = {"PENDING": fx.CANCELLING, "DONE": fx.CANCELLED}
SETTLEMENT_ROLE = types_pb2.ROLE_SETTLEMENT
BILLING = "suretynet.settlement.v1.BillingService/"


def sections(repo: SettlementRepository, agency_id: str) -> list[fx.Section]:
    """The agency's exported tables, in a fixed order (page tokens depend on it)."""
    orders, cancellations, member_rows = repo.orders, repo.cancellations, repo.members

    def member_credit_rows(order_number: str) -> object:
        query = member_rows.select()
        # Member credit belongs to no single order.
        return query.where(member_rows.member_id.is_null()) if order_number else query

    return [
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_ORDER,
            fx.rows_of(orders.select()),
            orders.order_number,
            lambda row: _order(row, agency_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_CANCELLATION,
            fx.rows_of(cancellations.select()),
            cancellations.order_number,
            lambda row: _cancellation(row, agency_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT,
            member_credit_rows,
            member_rows.member_id,
            lambda row: _member_credit(repo, row, agency_id),
        ),
        fx.void_section(
            repo.voids,
            kind=types_pb2.FLOW_RECORD_KIND_ORDER,
            entity_id=agency_id,
            role=SETTLEMENT_ROLE,
            method=BILLING + "VoidOrder",
            sender=lambda row: row.retail_entity_id,
            forwarded=(
                "suretynet.verification.v1.VerificationService/VoidTransactionReport",
                "verification",
            ),
        ),
    ]


def _order_state(row: SettlementOrderRow) -> str:
    if row.reported_at is None and row.billing_state in members.OPEN_BILLING_STATES:
        return fx.PENDING
    return fx.normalized(row.billing_state, ORDER_STATES)


def _order(row: SettlementOrderRow, agency_id: str) -> types_pb2.FlowRecord:
    events = [
        fx.event(
            "billing search received",
            row.created_at,
            method=BILLING + "SearchBillingAgencyIdentification",
            sender=row.retail_entity_id,
            receiver=agency_id,
            detail=f"result {row.result}",
        ),
        fx.event(
            "completion notice to member",
            row.completed_at,
            sender=agency_id,
            receiver="member",
            detail=f"notice {row.completion_notice_id}",
        ),
    ]
    if row.report_attempts > 0:
        events.append(
            fx.event(
                "transaction report retried",
                row.reported_at or row.updated_at,
                sender=agency_id,
                detail=f"{row.report_attempts} failed attempts; "
                + ("acknowledged" if row.reported_at else "not yet acknowledged"),
                attempts=row.report_attempts + (1 if row.reported_at else 0),
            )
        )
    if row.billed_at is not None:
        events.append(fx.event("billed", row.billed_at, sender=agency_id))
    record = fx.record(
        entity_id=agency_id,
        role=SETTLEMENT_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_ORDER,
        key=row.order_number,
        order_number=row.order_number,
        stored_state=row.billing_state,
        mapping=ORDER_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events=events,
        counterparts=[row.retail_entity_id],
        member_id=row.member_id,
        anonymous_user_id=row.anonymous_user_id,
        attributes={
            "billing_state": row.billing_state,
            "result": row.result,
            "reported": "true" if row.reported_at is not None else "false",
            "retail_entity_id": row.retail_entity_id,
            "trace_id": row.trace_id,
        },
    )
    record.state = _order_state(row)
    return record


def _cancellation(row: CancellationRow, agency_id: str) -> types_pb2.FlowRecord:
    events = [
        fx.event(
            "cancel request received",
            row.decided_at,
            method=BILLING + "NotifyCancelRequest",
            sender=row.retail_entity_id,
            receiver=agency_id,
            detail=f"{row.decision.lower().replace('_', ' ')}; {row.reason}".rstrip("; "),
        )
    ]
    if row.acknowledged_at is not None:
        events.append(fx.event("decision applied", row.acknowledged_at, sender=agency_id))
    return fx.record(
        entity_id=agency_id,
        role=SETTLEMENT_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_CANCELLATION,
        key=row.cancel_request_id,
        order_number=row.order_number,
        stored_state=row.status,
        mapping=CANCELLATION_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.decided_at,
        updated_at=row.acknowledged_at or row.decided_at,
        events=events,
        counterparts=[row.retail_entity_id],
        member_id=row.member_id,
        attributes={
            "decision": row.decision,
            "procedure": row.procedure,
            "requested_by": row.requested_by,
        },
    )


def _member_credit(
    repo: SettlementRepository, row: MemberRow, agency_id: str
) -> types_pb2.FlowRecord:
    record = fx.record(
        entity_id=agency_id,
        role=SETTLEMENT_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT,
        key=row.member_id,
        order_number="",
        stored_state=row.status,
        mapping={},
        amount_minor=members.credit_used(repo, row.member_id),
        currency_code=row.currency_code,
        created_at=row.enrolled_at,
        updated_at=row.updated_at,
        member_id=row.member_id,
        attributes={"open_billing_states": ",".join(members.OPEN_BILLING_STATES)},
    )
    record.credit_limit.CopyFrom(money(row.credit_limit_minor, row.currency_code))
    return record
