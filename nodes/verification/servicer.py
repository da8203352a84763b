"""Verification's gRPC adapter: proto in, use case, proto out."""

from __future__ import annotations

import grpc
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import logs
from nodes.common.calls import call_info
from nodes.common.convert import timestamp
from nodes.common.errors import required
from nodes.common.idempotency import serve_once
from nodes.common.interceptor import policy
from nodes.verification import reports
from storage.common.database import Store
from storage.verification.models import TransactionReportRow
from storage.verification.repository import VerificationRepository

SERVICE = "/suretynet.verification.v1.VerificationService/"

POLICIES = {
    SERVICE + "SubmitTransactionReport": policy("settlement"),
    SERVICE + "GetTransactionReport": policy("approval", "admin"),
    SERVICE + "SubmitCancelRequestNotice": policy("retail"),
    SERVICE + "SubmitCancelProcessNotice": policy("settlement"),
    SERVICE + "GetCancellationRecord": policy("admin", "approval", "retail", "settlement"),
}


def _report(row: TransactionReportRow) -> verification_pb2.TransactionReport:
    return verification_pb2.TransactionReport.FromString(bytes(row.report))


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """Transaction reports (step 9) and, with the cancellation issue, cancel notices."""

    def __init__(self, store: Store, repo: VerificationRepository) -> None:
        self._store = store
        self._repo = repo

    async def SubmitTransactionReport(
        self,
        request: verification_pb2.SubmitTransactionReportRequest,
        context: grpc.aio.ServicerContext,
    ) -> verification_pb2.SubmitTransactionReportResponse:
        caller = call_info().caller
        assert caller is not None, "the policy admits certificate holders only"
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
        row = await self._store.run(lambda: reports.get_report(self._repo, request.order_number))
        return verification_pb2.GetTransactionReportResponse(
            transaction_report=_report(row), received_at=timestamp(row.received_at)
        )
