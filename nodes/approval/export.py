"""Approval's records of flows for ExportFlowRecords: transaction records, mismatches, voids.

A refused transaction verification never becomes a transaction record (see
transactions.py); it is exported as a record of its own, state FAILED, with the attribute
``mismatch`` set, so that trace and console can show the refusal.
"""

from __future__ import annotations

from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from storage.approval.models import TransactionMismatchRow, TransactionRecordRow
from storage.approval.repository import ApprovalRepository

RECORD_STATES = {
    "RECORDED": fx.COMPLETED,
    "CANCELLED": fx.CANCELLED,
    "MISMATCH": fx.FAILED,
}
APPROVAL_ROLE = types_pb2.ROLE_APPROVAL
SERVICE = "suretynet.approval.v1.TransactionService/"


def sections(repo: ApprovalRepository, approval_id: str) -> list[fx.Section]:
    """Approval's exported tables, in a fixed order (page tokens depend on it)."""
    records, mismatches = repo.transactions, repo.mismatches

    return [
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
            fx.rows_of(records.select()),
            records.order_number,
            lambda row: _record(row, approval_id),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
            fx.rows_of(mismatches.select()),
            mismatches.mismatch_id,
            lambda row: _mismatch(row, approval_id),
        ),
        fx.void_section(
            repo.voids,
            kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
            entity_id=approval_id,
            role=APPROVAL_ROLE,
            method=SERVICE + "RecordTransactionVoid",
            sender=lambda row: row.retail_entity_id,
        ),
    ]


def _record(row: TransactionRecordRow, approval_id: str) -> types_pb2.FlowRecord:
    # Approval records a void only for an order it never verified (see
    # transactions.record_void), so a record is never voided; its voids export on their own.
    stored = "CANCELLED" if row.cancelled_at else "RECORDED"
    events = [
        fx.event(
            "transaction verified",
            row.recorded_at,
            method=SERVICE + "VerifyTransaction",
            sender=row.retail_entity_id,
            receiver=approval_id,
            detail=f"verification {row.transaction_verification_id}",
        )
    ]
    if row.cancelled_at is not None:
        events.append(
            fx.event(
                "cancellation recorded",
                row.cancelled_at,
                method=SERVICE + "RecordTransactionCancellation",
                sender=row.retail_entity_id,
                receiver=approval_id,
                detail=row.cancel_decision,
            )
        )
    return fx.record(
        entity_id=approval_id,
        role=APPROVAL_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
        key=row.order_number,
        order_number=row.order_number,
        stored_state=stored,
        mapping=RECORD_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.recorded_at,
        updated_at=row.cancelled_at or row.recorded_at,
        events=events,
        counterparts=[row.retail_entity_id, row.settlement_agency_id],
        attributes={
            "cancel_decision": row.cancel_decision,
            "cancelled_amount_minor": str(row.cancelled_amount_minor) if row.cancelled_at else "",
            "trace_id": row.trace_id,
        },
    )


def _mismatch(row: TransactionMismatchRow, approval_id: str) -> types_pb2.FlowRecord:
    event = fx.event(
        "transaction verification refused",
        row.recorded_at,
        method=SERVICE + "VerifyTransaction",
        sender=row.retail_entity_id,
        receiver=approval_id,
        refusal_reason="TRANSACTION_MISMATCH",
        detail=f"fields: {row.mismatched_fields}",
    )
    return fx.record(
        entity_id=approval_id,
        role=APPROVAL_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_RECORD,
        key=row.mismatch_id,
        order_number=row.order_number,
        stored_state="MISMATCH",
        mapping=RECORD_STATES,
        amount_minor=row.requested_amount_minor,
        currency_code=row.requested_currency_code,
        created_at=row.recorded_at,
        updated_at=row.recorded_at,
        events=[event],
        counterparts=[row.retail_entity_id, row.settlement_agency_id],
        attributes={"mismatch": "true", "mismatched_fields": row.mismatched_fields},
    )
