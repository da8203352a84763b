"""The member client library: what a member's app or a member institution's system uses.

Two connections, both server-authenticated TLS against the network CA (members hold no
certificate):
- ``AgencyClient`` to the member's settlement agency (member port): log in (step 1), a
  shop's payment information (step 2), anonymous user IDs (step 3), completion notices
  (step 7), listed or streamed;
- ``ShopClient`` to a shop (member port): catalog, payment information, buy, order status.
The shop never learns who the member is: the client sends it only the anonymous user ID.

Errors arrive as ``grpc.RpcError``; ``nodes.common.status.decode_rpc_error`` gives the
stable reason code. Every call carries a deadline and, when given, the flow's trace ID.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

import grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import telemetry, tls
from nodes.common.channels import channel_target

DEFAULT_TIMEOUT_S = 15.0


def _request_id() -> str:
    return uuid.uuid4().hex


class _Client:
    """A TLS channel trusting only the network CA, with deadline and trace metadata."""

    def __init__(
        self,
        address: str,
        ca_pem: bytes,
        *,
        trace_id: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # ``address`` may list an agency's replicas (ip:port,ip:port): any that is up serves.
        target, options = channel_target(address)
        self._channel = grpc.aio.secure_channel(
            target, tls.client_credentials(ca_pem), options=options
        )
        self.trace_id = trace_id
        self.timeout_s = timeout_s

    def _metadata(self) -> list[tuple[str, str]]:
        """The call's trace: ``trace_id`` (an ID or a label) if set, else the current span's."""
        if self.trace_id:
            return [(telemetry.TRACEPARENT_METADATA_KEY, telemetry.traceparent_for(self.trace_id))]
        return telemetry.outgoing_metadata()

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class AgencyClient(_Client):
    """A member's session at its settlement agency (MemberService)."""

    def __init__(
        self,
        address: str,
        ca_pem: bytes,
        *,
        session_token: str = "",
        trace_id: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(address, ca_pem, trace_id=trace_id, timeout_s=timeout_s)
        self._stub = settlement_pb2_grpc.MemberServiceStub(self._channel)
        self.session_token = session_token

    async def __aenter__(self) -> AgencyClient:
        return self

    def _authorized(self) -> list[tuple[str, str]]:
        return [*self._metadata(), ("authorization", f"Bearer {self.session_token}")]

    async def login(self, member_id: str, password: str) -> settlement_pb2.LoginResponse:
        """Step 1: the agency verifies the member; the session token is kept for later calls."""
        response: settlement_pb2.LoginResponse = await self._stub.Login(
            settlement_pb2.LoginRequest(member_id=member_id, password=password),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        self.session_token = response.session_token
        return response

    async def logout(self) -> None:
        await self._stub.Logout(
            settlement_pb2.LogoutRequest(request_id=_request_id()),
            metadata=self._authorized(),
            timeout=self.timeout_s,
        )
        self.session_token = ""

    async def payment_information(self, retail_entity_id: str) -> types_pb2.PaymentInformation:
        """Step 2: the shop's accepted payment methods and private details, via approval."""
        response = await self._stub.GetPaymentInformation(
            settlement_pb2.GetPaymentInformationRequest(retail_entity_id=retail_entity_id),
            metadata=self._authorized(),
            timeout=self.timeout_s,
        )
        return response.payment_information

    async def anonymous_user_id(
        self, retail_entity_id: str, *, request_id: str = ""
    ) -> settlement_pb2.IssueAnonymousUserIdResponse:
        """Step 3: the member's anonymous user ID for one shop (delivered to directory shops)."""
        response: settlement_pb2.IssueAnonymousUserIdResponse = (
            await self._stub.IssueAnonymousUserId(
                settlement_pb2.IssueAnonymousUserIdRequest(
                    request_id=request_id or _request_id(), retail_entity_id=retail_entity_id
                ),
                metadata=self._authorized(),
                timeout=self.timeout_s,
            )
        )
        return response

    async def completion_notices(
        self, page_size: int = 50
    ) -> list[settlement_pb2.TransactionCompletionNotice]:
        """Step 7: the member's transaction completion notices, newest first (one page)."""
        response = await self._stub.ListTransactionCompletionNotices(
            settlement_pb2.ListTransactionCompletionNoticesRequest(page_size=page_size),
            metadata=self._authorized(),
            timeout=self.timeout_s,
        )
        return list(response.transaction_completion_notices)

    async def data_disclosures(
        self, page_size: int = 50, page_token: str = ""
    ) -> settlement_pb2.ListDataDisclosuresResponse:
        """One page of who saw the member's data (what, when and why), newest first."""
        response: settlement_pb2.ListDataDisclosuresResponse = await self._stub.ListDataDisclosures(
            settlement_pb2.ListDataDisclosuresRequest(page_size=page_size, page_token=page_token),
            metadata=self._authorized(),
            timeout=self.timeout_s,
        )
        return response

    async def member_notices(self, page_size: int = 50) -> list[settlement_pb2.MemberNotice]:
        """Every notice to the member (completions, cancellations, billing), newest first."""
        response = await self._stub.ListMemberNotices(
            settlement_pb2.ListMemberNoticesRequest(page_size=page_size),
            metadata=self._authorized(),
            timeout=self.timeout_s,
        )
        return list(response.member_notices)

    async def stream_completion_notices(
        self, after_sequence: int = 0, *, timeout_s: float | None = None
    ) -> AsyncIterator[settlement_pb2.TransactionCompletionNotice]:
        """Step 7, streamed: kept notices after ``after_sequence``, then each new one."""
        call = self._stub.StreamTransactionCompletionNotices(
            settlement_pb2.StreamTransactionCompletionNoticesRequest(after_sequence=after_sequence),
            metadata=self._authorized(),
            timeout=timeout_s,
        )
        try:
            async for item in call:
                yield item.transaction_completion_notice
        finally:
            call.cancel()


class ShopClient(_Client):
    """A shopper at one shop (ShopService); the buyer is only an anonymous user ID here."""

    @property
    def _stub(self) -> retail_pb2_grpc.ShopServiceAsyncStub:
        return retail_pb2_grpc.ShopServiceStub(self._channel)

    async def __aenter__(self) -> ShopClient:
        return self

    async def catalog(self) -> list[retail_pb2.CatalogItem]:
        response = await self._stub.ListCatalog(
            retail_pb2.ListCatalogRequest(page_size=500),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        return list(response.catalog_items)

    async def payment_information(self) -> types_pb2.PaymentInformation:
        response = await self._stub.GetPaymentInformation(
            retail_pb2.GetPaymentInformationRequest(),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        return response.payment_information

    async def place_order(
        self,
        anonymous_user_id: str,
        items: Sequence[tuple[str, int]],
        *,
        payment_method: types_pb2.PaymentMethod.ValueType = types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT,
        installment_count: int = 0,
        request_id: str = "",
    ) -> retail_pb2.ShopOrder:
        """Buys: the shop runs steps 4-11 and answers with the verified order.

        Retrying with the same ``request_id`` after an UNAVAILABLE answer resumes the same
        order; it is never billed twice.
        """
        response = await self._stub.PlaceOrder(
            retail_pb2.PlaceOrderRequest(
                request_id=request_id or _request_id(),
                anonymous_user_id=anonymous_user_id,
                items=[
                    retail_pb2.OrderItem(catalog_item_id=item, quantity=quantity)
                    for item, quantity in items
                ],
                payment_method=payment_method,
                installment_count=installment_count,
            ),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        return response.order

    async def order(self, order_number: str, anonymous_user_id: str) -> retail_pb2.ShopOrder:
        response = await self._stub.GetOrder(
            retail_pb2.GetOrderRequest(
                order_number=order_number, anonymous_user_id=anonymous_user_id
            ),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        return response.order

    async def request_cancellation(
        self, order_number: str, anonymous_user_id: str, reason: str = "", *, request_id: str = ""
    ) -> retail_pb2.RequestCancellationResponse:
        """Asks the shop to cancel an order (claims 2-3); the same answer if asked again."""
        response: retail_pb2.RequestCancellationResponse = await self._stub.RequestCancellation(
            retail_pb2.RequestCancellationRequest(
                request_id=request_id or _request_id(),
                order_number=order_number,
                anonymous_user_id=anonymous_user_id,
                reason=reason,
            ),
            metadata=self._metadata(),
            timeout=self.timeout_s,
        )
        return response
