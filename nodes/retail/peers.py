"""Retail's outgoing calls: to approval (steps 2, 4a, 10; claim 10 catch-up) and to
settlement agencies (step 5; claim 19 pulls). Deadlines, bounded retries and trace IDs come
from the node's channels; a peer's refusal arrives as a DomainError with its reason.
"""

from __future__ import annotations

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common.errors import DomainError, ErrorKind
from nodes.common.guarantee_feed import guarantee_changes
from nodes.common.node import NodeRuntime


class RetailPeers:
    """Typed calls to the nodes a shop talks to."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self._runtime = runtime

    @property
    def _directory(self) -> approval_pb2_grpc.DirectoryServiceAsyncStub:
        approval = self._runtime.config.approval_address
        return self._runtime.channels.stub(approval, approval_pb2_grpc.DirectoryServiceStub)

    @property
    def _transactions(self) -> approval_pb2_grpc.TransactionServiceAsyncStub:
        approval = self._runtime.config.approval_address
        return self._runtime.channels.stub(approval, approval_pb2_grpc.TransactionServiceStub)

    def _billing(self, address: str) -> settlement_pb2_grpc.BillingServiceAsyncStub:
        return self._runtime.channels.stub(address, settlement_pb2_grpc.BillingServiceStub)

    async def payment_information(self) -> types_pb2.PaymentInformation:
        """Step 2: this shop's payment information as approval holds it."""
        response: approval_pb2.GetPaymentInformationResponse = await self._runtime.channels.call(
            self._directory.GetPaymentInformation,
            approval_pb2.GetPaymentInformationRequest(
                retail_entity_id=self._runtime.config.entity_id
            ),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        return response.payment_information

    async def search_settlement_agency(
        self, anonymous_user_id: str
    ) -> types_pb2.SettlementAgencyIdentificationGuarantee:
        """Step 4a (claim 1): the settlement agency identification search at approval."""
        response: approval_pb2.SearchSettlementAgencyIdentificationResponse = (
            await self._runtime.channels.call(
                self._directory.SearchSettlementAgencyIdentification,
                approval_pb2.SearchSettlementAgencyIdentificationRequest(
                    retail_entity_id=self._runtime.config.entity_id,
                    anonymous_user_id=anonymous_user_id,
                ),
                peer="approval",
                idempotent=True,
                to_approval=True,
            )
        )
        return response.guarantee

    async def related_settlement_agency(
        self, settlement_agency_id: str
    ) -> approval_pb2.RelatedSettlementAgencyInformation:
        """The agency's registry entry (routing prefix), to check an ID it delivers."""
        response: approval_pb2.GetRelatedSettlementAgencyInformationResponse = (
            await self._runtime.channels.call(
                self._directory.GetRelatedSettlementAgencyInformation,
                approval_pb2.GetRelatedSettlementAgencyInformationRequest(
                    settlement_agency_id=settlement_agency_id
                ),
                peer="approval",
                idempotent=True,
                to_approval=True,
            )
        )
        return response.information

    async def guarantees_from_approval(
        self, after_serial: int
    ) -> tuple[list[types_pb2.SettlementAgencyIdentificationGuarantee], int]:
        """Claim 10 catch-up: guarantee changes after a serial, and the serial they complete."""
        return await guarantee_changes(
            self._runtime.channels, self._runtime.config.approval_address, after_serial
        )

    async def guarantees_from_agency(
        self, address: str, agency_id: str, after_serial: int
    ) -> settlement_pb2.GetSettlementAgencyGuaranteesResponse:
        """Claim 19: the periodic pull from a settlement agency."""
        response: settlement_pb2.GetSettlementAgencyGuaranteesResponse = (
            await self._runtime.channels.call(
                self._billing(address).GetSettlementAgencyGuarantees,
                settlement_pb2.GetSettlementAgencyGuaranteesRequest(after_serial=after_serial),
                peer=agency_id,
                idempotent=True,
            )
        )
        return response

    async def search_billing_agency(
        self,
        address: str,
        agency_id: str,
        request: settlement_pb2.SearchBillingAgencyIdentificationRequest,
    ) -> settlement_pb2.TransactionCompletionReport:
        """Step 5 out, step 8 back: billing agency identification search, completion report."""
        response: settlement_pb2.SearchBillingAgencyIdentificationResponse = (
            await self._runtime.channels.call(
                self._billing(address).SearchBillingAgencyIdentification,
                request,
                peer=agency_id,
                idempotent=True,
            )
        )
        return response.transaction_completion_report

    async def verify_transaction(
        self, request: approval_pb2.VerifyTransactionRequest
    ) -> approval_pb2.VerifyTransactionResponse:
        """Step 10: the transaction verification request and approval's verification."""
        response: approval_pb2.VerifyTransactionResponse = await self._runtime.channels.call(
            self._transactions.VerifyTransaction,
            request,
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        return response

    async def record_transaction_void(
        self, request: approval_pb2.RecordTransactionVoidRequest
    ) -> approval_pb2.RecordTransactionVoidResponse:
        """The purchase's compensation, at approval: it will never verify the order."""
        response: approval_pb2.RecordTransactionVoidResponse = await self._runtime.channels.call(
            self._transactions.RecordTransactionVoid,
            request,
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        return response

    async def void_order(
        self, address: str, agency_id: str, request: settlement_pb2.VoidOrderRequest
    ) -> settlement_pb2.VoidOrderResponse:
        """The purchase's compensation, at the agency: the member's credit hold released."""
        response: settlement_pb2.VoidOrderResponse = await self._runtime.channels.call(
            self._billing(address).VoidOrder, request, peer=agency_id, idempotent=True
        )
        return response

    async def submit_cancel_request_notice(
        self, notice: types_pb2.CancelRequestNotice
    ) -> verification_pb2.SubmitCancelRequestNoticeResponse:
        """Claims 2-3: the cancel request notice, with the order number, to verification."""
        address = self._runtime.config.verification_address
        if not address:
            raise DomainError(
                ErrorKind.UNAVAILABLE,
                "PEER_UNAVAILABLE",
                "this shop has no verification_address configured",
            )
        stub = self._runtime.channels.stub(address, verification_pb2_grpc.VerificationServiceStub)
        response: verification_pb2.SubmitCancelRequestNoticeResponse = (
            await self._runtime.channels.call(
                stub.SubmitCancelRequestNotice,
                verification_pb2.SubmitCancelRequestNoticeRequest(
                    request_id=f"request-{notice.cancel_request_id}", cancel_request_notice=notice
                ),
                peer="verification",
                idempotent=True,
            )
        )
        return response

    async def notify_cancel_request(
        self,
        address: str,
        agency_id: str,
        notice: types_pb2.CancelRequestNotice,
        identification: types_pb2.RetailEntityIdentification,
    ) -> settlement_pb2.NotifyCancelRequestResponse:
        """Claims 2-3: the notice and the shop's identification to the settlement agency."""
        response: settlement_pb2.NotifyCancelRequestResponse = await self._runtime.channels.call(
            self._billing(address).NotifyCancelRequest,
            settlement_pb2.NotifyCancelRequestRequest(
                request_id=f"notify-{notice.cancel_request_id}",
                cancel_request_notice=notice,
                retail_entity=identification,
            ),
            peer=agency_id,
            idempotent=True,
        )
        return response

    async def record_transaction_cancellation(
        self, order_number: str, cancel_request_id: str
    ) -> approval_pb2.RecordTransactionCancellationResponse:
        """Marks approval's transaction record cancelled once verification holds the proof."""
        response: approval_pb2.RecordTransactionCancellationResponse = (
            await self._runtime.channels.call(
                self._transactions.RecordTransactionCancellation,
                approval_pb2.RecordTransactionCancellationRequest(
                    request_id=f"record-{cancel_request_id}",
                    order_number=order_number,
                    cancel_request_id=cancel_request_id,
                ),
                peer="approval",
                idempotent=True,
                to_approval=True,
            )
        )
        return response
