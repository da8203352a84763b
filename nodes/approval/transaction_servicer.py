"""Approval's TransactionService adapter: proto in, use case, proto out."""

from __future__ import annotations

import grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.approval import transactions
from nodes.approval.guarantees import check_own
from nodes.common import logs, voids
from nodes.common.calls import call_info, certificate_caller
from nodes.common.convert import timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations, required
from nodes.common.idempotency import remember_served, serve_once, served_answer, stored_served
from nodes.common.node import NodeRuntime
from nodes.common.paging import by_key
from storage.approval.repository import ApprovalRepository


class TransactionServicer(approval_pb2_grpc.TransactionServiceServicer):
    """Transaction verification (step 10) against verification's transaction reports."""

    def __init__(self, runtime: NodeRuntime, repo: ApprovalRepository) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo

    def _verification_address(self) -> str:
        address = self._runtime.config.verification_address
        if not address:
            raise DomainError(
                ErrorKind.UNAVAILABLE,
                "PEER_UNAVAILABLE",
                "approval has no verification_address configured",
            )
        return address

    async def _transaction_report(self, order_number: str) -> verification_pb2.TransactionReport:
        """Verification's report of the order; ORDER_VOIDED if the agency voided it."""
        stub = self._runtime.channels.stub(
            self._verification_address(), verification_pb2_grpc.VerificationServiceStub
        )
        response: verification_pb2.GetTransactionReportResponse = await self._runtime.channels.call(
            stub.GetTransactionReport,
            verification_pb2.GetTransactionReportRequest(order_number=order_number),
            peer="verification",
            idempotent=True,
        )
        if response.HasField("voided_at"):
            raise voids.refusal(order_number)
        return response.transaction_report

    async def VerifyTransaction(
        self, request: approval_pb2.VerifyTransactionRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.VerifyTransactionResponse:
        info = call_info()
        verification_request = request.transaction_verification_request
        transactions.validate_request(verification_request)
        check_own(info.caller, "retail", verification_request.retail_entity_id)
        repo = self._repo

        def look_up() -> approval_pb2.VerifyTransactionResponse | None:
            stored = stored_served(
                repo.idempotency, request, approval_pb2.VerifyTransactionResponse
            )
            if stored is None:
                transactions.check_not_voided(repo, verification_request)
            return stored

        stored = await self._store.run(look_up)
        if stored is not None:
            return stored
        report = await self._transaction_report(verification_request.order_number)
        fields = transactions.mismatched_fields(verification_request, report)
        trace_id = logs.current_trace_id()
        if fields:
            mismatch = transactions.Mismatch(
                verification_request, report.billing_details.amount, fields, trace_id
            )
            await self._store.run(lambda: transactions.record_mismatch(repo, mismatch))
            raise transactions.mismatch_error(verification_request.order_number, fields)

        def record() -> approval_pb2.VerifyTransactionResponse:
            transactions.check_not_voided(repo, verification_request)
            row = transactions.record_transaction(
                repo, verification_request, report.completed_at.ToDatetime(), trace_id
            )
            return remember_served(
                repo.idempotency,
                request,
                approval_pb2.VerifyTransactionResponse(
                    transaction_verification=transactions.verification_to_proto(row),
                    transaction_record=transactions.record_to_proto(row),
                ),
            )

        return await self._store.run(record)

    async def RecordTransactionVoid(
        self,
        request: approval_pb2.RecordTransactionVoidRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.RecordTransactionVoidResponse:
        caller = certificate_caller()
        void = transactions.validate_void(request, caller)

        def effect() -> approval_pb2.RecordTransactionVoidResponse:
            row = transactions.record_void(self._repo, void)
            return approval_pb2.RecordTransactionVoidResponse(
                order_number=row.order_number, voided_at=timestamp(row.voided_at)
            )

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            approval_pb2.RecordTransactionVoidResponse,
            effect,
        )

    async def _cancellation_record(
        self, order_number: str, cancel_request_id: str
    ) -> verification_pb2.CancellationRecord:
        stub = self._runtime.channels.stub(
            self._verification_address(), verification_pb2_grpc.VerificationServiceStub
        )
        response: verification_pb2.GetCancellationRecordResponse = (
            await self._runtime.channels.call(
                stub.GetCancellationRecord,
                verification_pb2.GetCancellationRecordRequest(
                    order_number=order_number, cancel_request_id=cancel_request_id
                ),
                peer="verification",
                idempotent=True,
            )
        )
        return response.cancellation_record

    async def RecordTransactionCancellation(
        self,
        request: approval_pb2.RecordTransactionCancellationRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.RecordTransactionCancellationResponse:
        violations = Violations()
        violations.require("order_number", request.order_number)
        violations.require("cancel_request_id", request.cancel_request_id)
        violations.raise_if_any()
        repo = self._repo
        row = await self._store.run(lambda: transactions.get_record(repo, request.order_number))
        check_own(call_info().caller, "retail", row.retail_entity_id)
        stored = await served_answer(
            self._store,
            repo.idempotency,
            request,
            approval_pb2.RecordTransactionCancellationResponse,
        )
        if stored is not None:
            return stored
        record = await self._cancellation_record(request.order_number, request.cancel_request_id)
        notice = transactions.check_cancellation(row, request.cancel_request_id, record)

        def mark() -> approval_pb2.RecordTransactionCancellationResponse:
            cancelled = transactions.mark_cancelled(repo, request.order_number, notice)
            return remember_served(
                repo.idempotency,
                request,
                approval_pb2.RecordTransactionCancellationResponse(
                    transaction_record=transactions.record_to_proto(cancelled)
                ),
            )

        return await self._store.run(mark)

    async def GetTransactionRecord(
        self, request: approval_pb2.GetTransactionRecordRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb2.GetTransactionRecordResponse:
        if not request.order_number:
            raise required("order_number")
        caller = call_info().caller
        row = await self._store.run(
            lambda: transactions.get_record(self._repo, request.order_number)
        )
        if caller is not None and caller.role == "retail":
            # Refused like every other node refuses another entity's object (NOT_OWNER).
            check_own(caller, "retail", row.retail_entity_id)
        return approval_pb2.GetTransactionRecordResponse(
            transaction_record=transactions.record_to_proto(row)
        )

    async def ListTransactionMismatches(
        self,
        request: approval_pb2.ListTransactionMismatchesRequest,
        context: grpc.aio.ServicerContext,
    ) -> approval_pb2.ListTransactionMismatchesResponse:

        def query() -> approval_pb2.ListTransactionMismatchesResponse:
            table = self._repo.mismatches
            rows = table.select()
            if request.order_number:
                rows = rows.where(table.order_number == request.order_number)
            page, token = by_key(rows, table.mismatch_id, request, descending=True)
            return approval_pb2.ListTransactionMismatchesResponse(
                transaction_mismatches=[transactions.mismatch_to_proto(row) for row in page],
                next_page_token=token,
            )

        return await self._store.run(query)
