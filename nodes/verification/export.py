"""Verification's records of flows for ExportFlowRecords: reports, cancellations, voids.

A transaction report reads CANCELLED once an agency's cancel process notice for its order
is stored, and VOIDED once the agency voided the order here (an ``OrderVoid``, exported
also as a record of its own).
"""

from __future__ import annotations

from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.common import voids
from storage.common.models import OrderVoid
from storage.verification.models import CancelProcessRow, CancelRequestRow, TransactionReportRow
from storage.verification.repository import VerificationRepository

REPORT_STATES = {
    "APPROVED": fx.COMPLETED,
    "DECLINED": fx.FAILED,
    "CANCELLED": fx.CANCELLED,
    "VOIDED": fx.VOIDED,
}
CANCELLATION_STATES = {"REQUESTED": fx.CANCELLING, "PROCESSED": fx.CANCELLED}
VERIFICATION_ROLE = types_pb2.ROLE_VERIFICATION
SERVICE = "suretynet.verification.v1.VerificationService/"


def sections(repo: VerificationRepository, verification_id: str) -> list[fx.Section]:
    """Verification's exported tables, in a fixed order (page tokens depend on it)."""
    reports, requests = repo.reports, repo.cancel_requests

    def process_of(order_number: str, cancel_request_id: str = "") -> CancelProcessRow | None:
        processes = repo.cancel_processes
        query = processes.select().where(processes.order_number == order_number)
        if cancel_request_id:
            query = query.where(processes.cancel_request_id == cancel_request_id)
        return query.first()

    return [
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_TRANSACTION_REPORT,
            fx.rows_of(reports.select()),
            reports.order_number,
            lambda row: _report(
                row,
                process_of(row.order_number),
                voids.voided(repo.voids, row.order_number, row.retail_entity_id),
                verification_id,
            ),
        ),
        fx.Section(
            types_pb2.FLOW_RECORD_KIND_CANCELLATION,
            fx.rows_of(requests.select()),
            requests.cancel_request_id,
            lambda row: _cancellation(
                row, process_of(row.order_number, row.cancel_request_id), verification_id
            ),
        ),
        fx.void_section(
            repo.voids,
            kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_REPORT,
            entity_id=verification_id,
            role=VERIFICATION_ROLE,
            method=SERVICE + "VoidTransactionReport",
            sender=lambda row: row.settlement_agency_id,
        ),
    ]


def _report(
    row: TransactionReportRow,
    process: CancelProcessRow | None,
    void: OrderVoid | None,
    verification_id: str,
) -> types_pb2.FlowRecord:
    stored = row.result
    voided_at = void.voided_at if void is not None else None
    if voided_at is not None:
        stored = "VOIDED"
    elif process is not None:
        stored = "CANCELLED"
    events = [
        fx.event(
            "transaction report received",
            row.received_at,
            method=SERVICE + "SubmitTransactionReport",
            sender=row.settlement_agency_id,
            receiver=verification_id,
            detail=f"result {row.result}",
        )
    ]
    return fx.record(
        entity_id=verification_id,
        role=VERIFICATION_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_TRANSACTION_REPORT,
        key=row.order_number,
        order_number=row.order_number,
        stored_state=stored,
        mapping=REPORT_STATES,
        amount_minor=row.amount_minor,
        currency_code=row.currency_code,
        created_at=row.received_at,
        updated_at=voided_at or (process.received_at if process else row.received_at),
        events=events,
        counterparts=[row.settlement_agency_id, row.retail_entity_id],
        attributes={
            "result": row.result,
            "cancel_decision": process.decision if process else "",
            "cancelled_amount_minor": str(process.amount_minor) if process else "",
            "trace_id": row.trace_id,
        },
    )


def _cancellation(
    row: CancelRequestRow, process: CancelProcessRow | None, verification_id: str
) -> types_pb2.FlowRecord:
    events = [
        fx.event(
            "cancel request notice received",
            row.received_at,
            method=SERVICE + "SubmitCancelRequestNotice",
            sender=row.retail_entity_id,
            receiver=verification_id,
        )
    ]
    amount_minor, currency = 0, ""
    if process is not None:
        amount_minor, currency = process.amount_minor, process.currency_code
        events.append(
            fx.event(
                "cancel process notice received",
                process.received_at,
                method=SERVICE + "SubmitCancelProcessNotice",
                sender=process.settlement_agency_id,
                receiver=verification_id,
                detail=process.decision,
            )
        )
        if process.verification:
            events.append(
                fx.event(
                    "cancel verification issued",
                    process.received_at,
                    sender=verification_id,
                    receiver=process.settlement_agency_id,
                )
            )
    return fx.record(
        entity_id=verification_id,
        role=VERIFICATION_ROLE,
        kind=types_pb2.FLOW_RECORD_KIND_CANCELLATION,
        key=row.cancel_request_id,
        order_number=row.order_number,
        stored_state="PROCESSED" if process is not None else "REQUESTED",
        mapping=CANCELLATION_STATES,
        amount_minor=amount_minor,
        currency_code=currency,
        created_at=row.received_at,
        updated_at=process.received_at if process else row.received_at,
        events=events,
        counterparts=[row.retail_entity_id, row.settlement_agency_id],
        attributes={
            "procedure": row.procedure,
            "decision": process.decision if process else "",
        },
    )
