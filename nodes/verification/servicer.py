"""Verification's gRPC adapter: proto in, use case, proto out."""

from __future__ import annotations

import grpc
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import flow_export, logs
from nodes.common.calls import certificate_caller
from nodes.common.convert import timestamp
from nodes.common.errors import required
from nodes.common.idempotency import serve_once
from nodes.common.interceptor import policy
from nodes.verification import cancellations, export, reports
from storage.common.database import Store
from storage.verification.models import TransactionReportRow
from storage.verification.repository import VerificationRepository

SERVICE = "/suretynet.verification.v1.VerificationService/"
ADMIN = "/suretynet.verification.v1.VerificationAdminService/"

POLICIES = {
    SERVICE + "SubmitTransactionReport": policy("settlement"),
    SERVICE + "GetTransactionReport": policy("approval", "admin"),
    SERVICE + "SubmitCancelRequestNotice": policy("retail"),
    SERVICE + "SubmitCancelProcessNotice": policy("settlement"),
    SERVICE + "GetCancellationRecord": policy("admin", "approval", "retail", "settlement"),
    ADMIN + "ExportAuditChain": policy("admin"),
    ADMIN + "ListAuditedRecords": policy("admin"),
    SERVICE + "VoidTransactionReport": policy("settlement"),
    ADMIN + "ExportFlowRecords": policy("admin"),
}


def _report(row: TransactionReportRow) -> verification_pb2.TransactionReport:
    return verification_pb2.TransactionReport.FromString(bytes(row.report))


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """Transaction reports (step 9) and cancel notices (claims 2-3)."""

    def __init__(self, store: Store, repo: VerificationRepository) -> None:
        self._store = store
        self._repo = repo

    async def SubmitTransactionReport(
        self,
        request: verification_pb2.SubmitTransactionReportRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.SubmitTransactionReportResponse:
        caller = certificate_caller()
        reports.validate_report(request.transaction_report, caller)
        trace_id = logs.current_trace_id()

        def effect() -> verification_pb2.SubmitTransactionReportResponse:
            row = reports.store_report(self._repo, request.transaction_report, trace_id)
            return verification_pb2.SubmitTransactionReportResponse(
                transaction_report=_report(row), received_at=timestamp(row.received_at)
            )

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            verification_pb2.SubmitTransactionReportResponse,
            effect,
        )

    async def GetTransactionReport(
        self,
        request: verification_pb2.GetTransactionReportRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.GetTransactionReportResponse:
        if not request.order_number:
            raise required("order_number")
        row, void = await self._store.run(
            lambda: reports.get_report_and_void(self._repo, request.order_number)
        )
        return verification_pb2.GetTransactionReportResponse(
            transaction_report=_report(row),
            received_at=timestamp(row.received_at),
            voided_at=timestamp(void.voided_at if void is not None else None),
        )

    async def VoidTransactionReport(
        self,
        request: verification_pb2.VoidTransactionReportRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.VoidTransactionReportResponse:
        caller = certificate_caller()
        void = reports.validate_void(request, caller)

        def effect() -> verification_pb2.VoidTransactionReportResponse:
            row, existed = reports.void_report(self._repo, void)
            return verification_pb2.VoidTransactionReportResponse(
                order_number=row.order_number,
                report_existed=existed,
                voided_at=timestamp(row.voided_at),
            )

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            verification_pb2.VoidTransactionReportResponse,
            effect,
        )

    async def SubmitCancelRequestNotice(
        self,
        request: verification_pb2.SubmitCancelRequestNoticeRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.SubmitCancelRequestNoticeResponse:
        caller = certificate_caller()

        def effect() -> verification_pb2.SubmitCancelRequestNoticeResponse:
            row = cancellations.store_request(self._repo, request.cancel_request_notice, caller)
            return verification_pb2.SubmitCancelRequestNoticeResponse(
                cancel_request_notice=request.cancel_request_notice,
                received_at=timestamp(row.received_at),
            )

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            verification_pb2.SubmitCancelRequestNoticeResponse,
            effect,
        )

    async def SubmitCancelProcessNotice(
        self,
        request: verification_pb2.SubmitCancelProcessNoticeRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.SubmitCancelProcessNoticeResponse:
        caller = certificate_caller()

        def effect() -> verification_pb2.SubmitCancelProcessNoticeResponse:
            row, request_row = cancellations.store_process(
                self._repo, request.cancel_process_notice, caller
            )
            return cancellations.process_response(row, request_row)

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            verification_pb2.SubmitCancelProcessNoticeResponse,
            effect,
        )

    async def GetCancellationRecord(
        self,
        request: verification_pb2.GetCancellationRecordRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.GetCancellationRecordResponse:
        if not request.order_number:
            raise required("order_number")
        caller = certificate_caller()
        record = await self._store.run(
            lambda: cancellations.cancellation_record(
                self._repo, request.order_number, request.cancel_request_id, caller
            )
        )
        return verification_pb2.GetCancellationRecordResponse(cancellation_record=record)


class VerificationAdminServicer(verification_pb2_grpc.VerificationAdminServiceServicer):
    """The institution's operators' view of verification's records."""

    def __init__(self, store: Store, repo: VerificationRepository, entity_id: str) -> None:
        self._store = store
        self._repo = repo
        self._entity_id = entity_id

    async def ExportFlowRecords(
        self,
        request: verification_pb2.ExportFlowRecordsRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.ExportFlowRecordsResponse:
        sections = export.sections(self._repo, self._entity_id)
        records, token = await self._store.run(lambda: flow_export.export_page(sections, request))
        return verification_pb2.ExportFlowRecordsResponse(
            flow_records=records, next_page_token=token
        )
