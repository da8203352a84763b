"""Settlement's outgoing calls: to approval (steps 2, 6, claim 19 source), verification
(step 9) and shops (anonymous ID delivery, claim 1). Deadlines, retries and trace IDs come
from the node's channels; a peer's refusal arrives as a DomainError with its reason.
"""

from __future__ import annotations

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common.convert import enum_value
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.guarantee_feed import guarantee_changes
from nodes.common.node import NodeRuntime
from storage.common.models import OrderVoid


class SettlementPeers:
    """Typed calls to the nodes settlement talks to."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    @property
    def _directory(self) -> approval_pb2_grpc.DirectoryServiceAsyncStub:
        approval = self._runtime.config.approval_address
        return self._runtime.channels.stub(approval, approval_pb2_grpc.DirectoryServiceStub)

    def _verification(self) -> verification_pb2_grpc.VerificationServiceAsyncStub:
        address = self._runtime.config.verification_address
        if not address:
            raise DomainError(
                ErrorKind.UNAVAILABLE,
                "PEER_UNAVAILABLE",
                "this settlement node has no verification_address configured",
            )
        return self._runtime.channels.stub(address, verification_pb2_grpc.VerificationServiceStub)

    async def retail_entity_guarantee(
        self, identification: types_pb2.RetailEntityIdentification, order_number: str
    ) -> approval_pb2.RetailEntityIdentificationGuarantee:
        """Step 6: the retail entity identification search and approval's guarantee."""
        response = await self._runtime.channels.call(
            self._directory.SearchRetailEntityIdentification,
            approval_pb2.SearchRetailEntityIdentificationRequest(
                retail_entity=identification, order_number=order_number
            ),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        return response.guarantee

    async def payment_information(self, retail_entity_id: str) -> types_pb2.PaymentInformation:
        """Step 2: the shop's payment methods and private details, from approval."""
        response = await self._runtime.channels.call(
            self._directory.GetPaymentInformation,
            approval_pb2.GetPaymentInformationRequest(retail_entity_id=retail_entity_id),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        return response.payment_information

    async def guarantees_after(
        self, after_serial: int
    ) -> tuple[list[types_pb2.SettlementAgencyIdentificationGuarantee], int]:
        """Guarantee changes after a serial and the serial they bring a receiver up to."""
        return await guarantee_changes(
            self._runtime.channels, self._runtime.config.approval_address, after_serial
        )

    async def submit_transaction_report(self, report: verification_pb2.TransactionReport) -> None:
        """Step 9: the transaction report to verification (idempotent per order number)."""
        _: verification_pb2.SubmitTransactionReportResponse = await self._runtime.channels.call(
            self._verification().SubmitTransactionReport,
            verification_pb2.SubmitTransactionReportRequest(
                request_id=f"report-{report.order_number}", transaction_report=report
            ),
            peer="verification",
            idempotent=True,
        )

    async def void_transaction_report(self, void: OrderVoid) -> None:
        """The agency's void of an order, to verification (idempotent per order number)."""
        _: verification_pb2.VoidTransactionReportResponse = await self._runtime.channels.call(
            self._verification().VoidTransactionReport,
            verification_pb2.VoidTransactionReportRequest(
                request_id=f"void-{void.order_number}",
                order_number=void.order_number,
                settlement_agency_id=void.settlement_agency_id,
                retail_entity_id=void.retail_entity_id,
                reason=enum_value(types_pb2.ErrorReason, "ERROR_REASON_", void.reason),
            ),
            peer="verification",
            idempotent=True,
        )

    async def deliver_anonymous_user_id(
        self, address: str, anonymous_user_id: types_pb2.AnonymousUserId
    ) -> None:
        """Claim 1: the anonymous user ID, sent from the agency to the shop."""
        stub = self._runtime.channels.stub(address, retail_pb2_grpc.AnonymousIdServiceStub)
        _: retail_pb2.DeliverAnonymousUserIdResponse = await self._runtime.channels.call(
            stub.DeliverAnonymousUserId,
            retail_pb2.DeliverAnonymousUserIdRequest(
                request_id=f"deliver-{anonymous_user_id.value}",
                anonymous_user_id=anonymous_user_id,
                settlement_agency_id=self._runtime.config.entity_id,
            ),
            peer=anonymous_user_id.retail_entity_id,
            idempotent=True,
        )

    async def submit_cancel_process_notice(
        self, notice: verification_pb2.CancelProcessNotice
    ) -> verification_pb2.SubmitCancelProcessNoticeResponse:
        """Claims 2-3: the cancel process notice to verification; under VERIFIED the answer
        carries the cancel verification."""
        response: verification_pb2.SubmitCancelProcessNoticeResponse = (
            await self._runtime.channels.call(
                self._verification().SubmitCancelProcessNotice,
                verification_pb2.SubmitCancelProcessNoticeRequest(
                    request_id=f"process-{notice.cancel_request_id}",
                    cancel_process_notice=notice,
                ),
                peer="verification",
                idempotent=True,
            )
        )
        return response
