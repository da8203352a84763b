"""Verification's audit chain: what each report and cancellation notice appends, and the
admin RPCs that export it (VerificationAdminService).

Every stored transaction report, cancel request notice and cancel process notice (with its
cancel verification, under VERIFIED) appends one entry in the transaction that stores it;
see ``nodes/common/audit_chain.py``. A later change to one of these rows (a void) must be
appended as its own entry, never edited into an earlier one.
"""

from __future__ import annotations

import grpc
from suretynet.verification.v1 import verification_pb2

from nodes.common.audit_chain import (
    VOID_TABLE,
    AuditedTable,
    CheckpointPublisher,
    digest,
    iso,
    serve_audited_records,
    serve_export,
    void_state,
)
from nodes.verification import servicer
from storage.common.database import Store
from storage.verification.models import CancelProcessRow, CancelRequestRow, TransactionReportRow
from storage.verification.repository import VerificationRepository

REPORT_TABLE = "transaction_report"
REQUEST_TABLE = "cancel_request_notice"
PROCESS_TABLE = "cancel_process_notice"


def report_state(row: TransactionReportRow) -> dict[str, object]:
    return {
        "order_number": row.order_number,
        "settlement_agency_id": row.settlement_agency_id,
        "retail_entity_id": row.retail_entity_id,
        "amount_minor": int(row.amount_minor),
        "currency_code": row.currency_code,
        "result": row.result,
        "report_sha256": digest(row.report),
        "trace_id": row.trace_id,
        "received_at": iso(row.received_at),
    }


def request_state(row: CancelRequestRow) -> dict[str, object]:
    return {
        "cancel_request_id": row.cancel_request_id,
        "order_number": row.order_number,
        "retail_entity_id": row.retail_entity_id,
        "settlement_agency_id": row.settlement_agency_id,
        "procedure": row.procedure,
        "notice_sha256": digest(row.notice),
        "received_at": iso(row.received_at),
    }


def process_state(row: CancelProcessRow) -> dict[str, object]:
    return {
        "cancel_request_id": row.cancel_request_id,
        "order_number": row.order_number,
        "settlement_agency_id": row.settlement_agency_id,
        "decision": row.decision,
        "amount_minor": int(row.amount_minor),
        "currency_code": row.currency_code,
        "notice_sha256": digest(row.notice),
        "verification_sha256": digest(row.verification),
        "received_at": iso(row.received_at),
    }


def chain_report(repo: VerificationRepository, row: TransactionReportRow) -> None:
    repo.audit.append("REPORT_RECEIVED", f"{REPORT_TABLE}/{row.order_number}", report_state(row))


def chain_cancel_request(repo: VerificationRepository, row: CancelRequestRow) -> None:
    repo.audit.append(
        "CANCEL_REQUEST_RECEIVED", f"{REQUEST_TABLE}/{row.cancel_request_id}", request_state(row)
    )


def chain_cancel_process(repo: VerificationRepository, row: CancelProcessRow) -> None:
    repo.audit.append(
        "CANCEL_PROCESS_RECEIVED", f"{PROCESS_TABLE}/{row.cancel_request_id}", process_state(row)
    )


def audited_tables(repo: VerificationRepository) -> list[AuditedTable]:
    """Verification's audited tables, in the order ListAuditedRecords walks them."""
    return [
        AuditedTable(REPORT_TABLE, repo.reports, repo.reports.order_number, report_state),
        AuditedTable(
            REQUEST_TABLE,
            repo.cancel_requests,
            repo.cancel_requests.cancel_request_id,
            request_state,
        ),
        AuditedTable(
            PROCESS_TABLE,
            repo.cancel_processes,
            repo.cancel_processes.cancel_request_id,
            process_state,
        ),
        AuditedTable(VOID_TABLE, repo.voids, repo.voids.order_number, void_state),
    ]


class VerificationAdminServicer(servicer.VerificationAdminServicer):
    """The institution operators' console at verification: its flow records (for
    reconcile, trace and console) and its audit chain."""

    def __init__(
        self,
        store: Store,
        repo: VerificationRepository,
        entity_id: str,
        publisher: CheckpointPublisher,
    ) -> None:
        super().__init__(store, repo, entity_id)
        self._publisher = publisher

    async def ExportAuditChain(
        self,
        request: verification_pb2.ExportAuditChainRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.ExportAuditChainResponse:
        response: verification_pb2.ExportAuditChainResponse = await serve_export(
            self._store,
            self._repo.audit,
            self._publisher,
            request,
            verification_pb2.ExportAuditChainResponse,
        )
        return response

    async def ListAuditedRecords(
        self,
        request: verification_pb2.ListAuditedRecordsRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.ListAuditedRecordsResponse:
        response: verification_pb2.ListAuditedRecordsResponse = await serve_audited_records(
            self._store,
            audited_tables(self._repo),
            request,
            verification_pb2.ListAuditedRecordsResponse,
        )
        return response
