"""Settlement's gRPC adapters: members (steps 1-3, 7), shops (steps 5-9, claim 19), admin."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common import credentials, disclosures, flow_export, metrics
from nodes.common.calls import call_info, certificate_caller
from nodes.common.convert import (
    decode_page_token,
    encode_page_token,
    enum_label,
    enum_value,
    money,
    page_size,
    timestamp,
)
from nodes.common.errors import DomainError, ErrorKind, Violations, required
from nodes.common.idempotency import serve_once
from nodes.common.interceptor import policy
from nodes.common.node import NodeRuntime
from nodes.common.paging import by_key
from nodes.settlement import billing, cancellations, export, members, notices, purchases
from nodes.settlement.flows import AgencyFlows
from nodes.settlement.notices import NoticeBoard
from nodes.settlement.peers import SettlementPeers
from nodes.settlement.settings import SettlementSettings
from storage.common import statements
from storage.settlement.models import MemberNoticeRow, MemberRow, SessionRow, SettlementOrderRow
from storage.settlement.repository import SettlementRepository

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)

MEMBER = "/suretynet.settlement.v1.MemberService/"
BILLING = "/suretynet.settlement.v1.BillingService/"
ADMIN = "/suretynet.settlement.v1.SettlementAdminService/"

POLICIES = {
    **{
        MEMBER + name: policy(members=True)
        for name in (
            "Login",
            "Logout",
            "GetPaymentInformation",
            "IssueAnonymousUserId",
            "ListTransactionCompletionNotices",
            "StreamTransactionCompletionNotices",
            "ListMemberNotices",
            "ListDataDisclosures",
        )
    },
    BILLING + "SearchBillingAgencyIdentification": policy("retail"),
    BILLING + "GetSettlementAgencyGuarantees": policy("retail", "admin"),
    BILLING + "GetBillingStatus": policy("retail", "admin"),
    BILLING + "NotifyCancelRequest": policy("retail"),
    BILLING + "VoidOrder": policy("retail"),
    **{
        ADMIN + name: policy("admin")
        for name in (
            "EnrollMember",
            "SetCreditLimit",
            "RunBilling",
            "GetOrder",
            "ListOrders",
            "ExportFlowRecords",
        )
    },
}

NOTICE_KINDS = {
    "TRANSACTION_COMPLETED": settlement_pb2.MEMBER_NOTICE_KIND_TRANSACTION_COMPLETED,
}
# A stream re-reads the database at least this often even without a wake-up.
STREAM_POLL_S = 5.0
STREAM_BATCH = 100


def member_to_proto(member: MemberRow, used_minor: int) -> settlement_pb2.Member:
    return settlement_pb2.Member(
        member_id=member.member_id,
        display_name=member.display_name,
        credit_limit=money(member.credit_limit_minor, member.currency_code),
        credit_used=money(used_minor, member.currency_code),
        status=enum_value(settlement_pb2.MemberStatus, "MEMBER_STATUS_", member.status),
        enrolled_at=timestamp(member.enrolled_at),
    )


def _completion_notice(row: MemberNoticeRow) -> settlement_pb2.TransactionCompletionNotice:
    return settlement_pb2.TransactionCompletionNotice.FromString(bytes(row.payload))


def _member_notice(row: MemberNoticeRow) -> settlement_pb2.MemberNotice:
    notice = settlement_pb2.MemberNotice(
        notice_id=row.notice_id,
        kind=enum_value(settlement_pb2.MemberNoticeKind, "MEMBER_NOTICE_KIND_", row.kind),
        order_number=row.order_number,
        amount=money(row.amount_minor, row.currency_code),
        message=row.message,
        created_at=timestamp(row.created_at),
    )
    if row.kind == "TRANSACTION_COMPLETED":
        notice.transaction_completion_notice.CopyFrom(_completion_notice(row))
    elif row.kind == "CANCELLATION_PROCESSED":
        notice.cancel_process_result.ParseFromString(bytes(row.payload))
    return notice


def _sequence_token(token: str) -> int:
    decoded = decode_page_token(token)
    return int(decoded) if decoded.isdigit() else 0


class _AgencyServicer:
    """What the member-facing and shop-facing servicers of an agency share."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: SettlementRepository,
        peers: SettlementPeers,
        board: NoticeBoard,
        settings: SettlementSettings,
    ) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self._board = board
        self._settings = settings
        self._flows = AgencyFlows(runtime, repo, peers, board, settings)

    @property
    def flows(self) -> AgencyFlows:
        return self._flows


class MemberServicer(_AgencyServicer, settlement_pb2_grpc.MemberServiceServicer):
    """The member's own access: login, payment information, anonymous IDs, notices."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: SettlementRepository,
        peers: SettlementPeers,
        board: NoticeBoard,
        settings: SettlementSettings,
    ) -> None:
        super().__init__(runtime, repo, peers, board, settings)
        self._throttle = credentials.LoginThrottle.for_node(
            runtime.store, repo.login_failures, runtime.config.limits
        )

    async def _session(self) -> tuple[MemberRow, SessionRow]:
        authorization = call_info().metadata.get("authorization")
        return await self._store.run(lambda: members.authenticate(self._repo, authorization))

    async def _once(
        self, member_id: str, request: Message, response_type: type[R], effect: Callable[[], R]
    ) -> R:
        """``serve_once`` scoped to the member, so members choosing equal IDs never collide."""
        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            response_type,
            effect,
            scope=f"member:{member_id}",
        )

    async def Login(
        self, request: settlement_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.LoginResponse:
        violations = Violations()
        violations.require("member_id", request.member_id)
        violations.require("password", request.password)
        violations.raise_if_any()

        def open_session() -> settlement_pb2.LoginResponse:
            token, session, member = members.login(
                self._repo, request.member_id, request.password, self._settings.session_ttl_s
            )
            return settlement_pb2.LoginResponse(
                session_token=token,
                expires_at=timestamp(session.expires_at),
                member=member_to_proto(member, members.credit_used(self._repo, member.member_id)),
            )

        return await credentials.throttled_login(
            self._throttle, request.member_id, lambda: self._store.run(open_session)
        )

    async def Logout(
        self, request: settlement_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.LogoutResponse:
        authorization = call_info().metadata.get("authorization")
        member_id, session = await self._store.run(
            lambda: members.session_to_end(self._repo, authorization)
        )
        # Scoped to the session too: a member reusing a request_id for a later session's
        # Logout (the body is the same, the token is metadata) must not get the old answer.
        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            settlement_pb2.LogoutResponse,
            lambda: settlement_pb2.LogoutResponse(
                ended_at=timestamp(members.logout(self._repo, session))
            ),
            scope=f"member:{member_id}/session:{session.token_sha256[:16]}",
        )

    async def GetPaymentInformation(
        self,
        request: settlement_pb2.GetPaymentInformationRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.GetPaymentInformationResponse:
        await self._session()
        if not request.retail_entity_id:
            raise required("retail_entity_id")
        information = await self._peers.payment_information(request.retail_entity_id)
        return settlement_pb2.GetPaymentInformationResponse(payment_information=information)

    async def IssueAnonymousUserId(
        self,
        request: settlement_pb2.IssueAnonymousUserIdRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.IssueAnonymousUserIdResponse:
        member, _ = await self._session()
        if not request.retail_entity_id:
            raise required("retail_entity_id")
        return await self._flows.issue_anonymous_user_id(member, request)

    async def ListTransactionCompletionNotices(
        self,
        request: settlement_pb2.ListTransactionCompletionNoticesRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.ListTransactionCompletionNoticesResponse:
        member, _ = await self._session()
        size, before = page_size(request.page_size), _sequence_token(request.page_token)
        rows = await self._store.run(
            lambda: notices.notices_page(
                self._repo, member.member_id, "TRANSACTION_COMPLETED", before, size + 1
            )
        )
        return settlement_pb2.ListTransactionCompletionNoticesResponse(
            transaction_completion_notices=[_completion_notice(row) for row in rows[:size]],
            next_page_token=encode_page_token(str(rows[size - 1].sequence))
            if len(rows) > size
            else "",
        )

    async def StreamTransactionCompletionNotices(
        self,
        request: settlement_pb2.StreamTransactionCompletionNoticesRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[settlement_pb2.StreamTransactionCompletionNoticesResponse]:
        member, _session = await self._session()
        member_id, after = member.member_id, max(0, request.after_sequence)
        wake = self._board.subscribe(member_id)
        try:
            while True:
                rows = await self._store.run(
                    functools.partial(
                        notices.notices_after,
                        self._repo,
                        member_id,
                        "TRANSACTION_COMPLETED",
                        after,
                        STREAM_BATCH,
                    )
                )
                for row in rows:
                    after = row.sequence
                    yield settlement_pb2.StreamTransactionCompletionNoticesResponse(
                        transaction_completion_notice=_completion_notice(row)
                    )
                if len(rows) == STREAM_BATCH:
                    continue
                # The stream lives as long as the session that opened it.
                await self._session()
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=STREAM_POLL_S)
        finally:
            self._board.unsubscribe(member_id, wake)

    async def ListMemberNotices(
        self,
        request: settlement_pb2.ListMemberNoticesRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.ListMemberNoticesResponse:
        member, _ = await self._session()
        size, before = page_size(request.page_size), _sequence_token(request.page_token)
        kind = enum_label(
            settlement_pb2.MemberNoticeKind, "MEMBER_NOTICE_KIND_", request.kind
        ).upper()
        rows = await self._store.run(
            lambda: notices.notices_page(self._repo, member.member_id, kind, before, size + 1)
        )
        return settlement_pb2.ListMemberNoticesResponse(
            member_notices=[_member_notice(row) for row in rows[:size]],
            next_page_token=encode_page_token(str(rows[size - 1].sequence))
            if len(rows) > size
            else "",
        )

    async def ListDataDisclosures(
        self,
        request: settlement_pb2.ListDataDisclosuresRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.ListDataDisclosuresResponse:
        member, _ = await self._session()

        def query() -> settlement_pb2.ListDataDisclosuresResponse:
            found, token = disclosures.page(self._repo.data_disclosures, member.member_id, request)
            return settlement_pb2.ListDataDisclosuresResponse(
                data_disclosures=found, next_page_token=token
            )

        return await self._store.run(query)


class BillingServicer(_AgencyServicer, settlement_pb2_grpc.BillingServiceServicer):
    """What shops call: the purchase (steps 5-9), cancellations (claims 2-3) and the
    claim 19 guarantee pull."""

    async def NotifyCancelRequest(
        self,
        request: settlement_pb2.NotifyCancelRequestRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.NotifyCancelRequestResponse:
        caller = certificate_caller()
        return await self._flows.process_cancel_request(caller, request)

    async def SearchBillingAgencyIdentification(
        self,
        request: settlement_pb2.SearchBillingAgencyIdentificationRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.SearchBillingAgencyIdentificationResponse:
        caller = certificate_caller()
        with metrics.counting_refusals("purchase_approval"):
            return await self._flows.approve_purchase(caller, request)

    async def VoidOrder(
        self, request: settlement_pb2.VoidOrderRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.VoidOrderResponse:
        return await self._flows.void_order(certificate_caller(), request)

    async def GetSettlementAgencyGuarantees(
        self,
        request: settlement_pb2.GetSettlementAgencyGuaranteesRequest,
        context: grpc.aio.ServicerContext,
    ) -> settlement_pb2.GetSettlementAgencyGuaranteesResponse:
        if request.after_serial < 0:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT, "FIELD_INVALID", "after_serial: must not be negative"
            )
        guarantees, serial = await self._peers.guarantees_after(request.after_serial)
        return settlement_pb2.GetSettlementAgencyGuaranteesResponse(
            guarantees=guarantees,
            registry_serial=serial,
            refresh_interval_s=self._settings.guarantee_refresh_interval_s,
            max_staleness_s=self._settings.guarantee_max_staleness_s,
            full_replacement=request.after_serial == 0,
        )

    async def GetBillingStatus(
        self, request: settlement_pb2.GetBillingStatusRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.GetBillingStatusResponse:
        if not request.order_number:
            raise required("order_number")
        caller = call_info().caller
        order = await self._store.run(lambda: purchases.get_order(self._repo, request.order_number))
        if (
            caller is not None
            and caller.role == "retail"
            and order.retail_entity_id != caller.entity_id
        ):
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "NOT_OWNER",
                f"{caller.uri} did not sell order {request.order_number}",
            )
        return settlement_pb2.GetBillingStatusResponse(
            billing_status=settlement_pb2.BillingStatus(
                order_number=order.order_number,
                billing_state=enum_value(
                    settlement_pb2.BillingState, "BILLING_STATE_", order.billing_state
                ),
                amount=money(order.amount_minor, order.currency_code),
                billed_at=timestamp(order.billed_at),
                updated_at=timestamp(order.updated_at),
            )
        )


class SettlementAdminServicer(settlement_pb2_grpc.SettlementAdminServiceServicer):
    """The agency's operator console: members, credit limits, orders."""

    def __init__(self, runtime: NodeRuntime, repo: SettlementRepository) -> None:
        self._store = runtime.store
        self._repo = repo
        self._entity_id = runtime.config.entity_id

    async def EnrollMember(
        self, request: settlement_pb2.EnrollMemberRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.EnrollMemberResponse:
        def effect() -> settlement_pb2.EnrollMemberResponse:
            member = members.enroll_member(
                self._repo,
                member_id=request.member_id,
                display_name=request.display_name,
                password=request.password,
                credit_limit_minor=request.credit_limit.amount_minor,
                currency_code=request.credit_limit.currency_code,
            )
            return settlement_pb2.EnrollMemberResponse(member=member_to_proto(member, 0))

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            settlement_pb2.EnrollMemberResponse,
            effect,
        )

    async def SetCreditLimit(
        self, request: settlement_pb2.SetCreditLimitRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.SetCreditLimitResponse:
        if not request.member_id:
            raise required("member_id")

        def effect() -> settlement_pb2.SetCreditLimitResponse:
            member = members.set_credit_limit(
                self._repo,
                request.member_id,
                request.credit_limit.amount_minor,
                request.credit_limit.currency_code,
            )
            notices.add_notice(
                self._repo,
                member_id=member.member_id,
                kind="CREDIT_LIMIT_CHANGED",
                order_number="",
                amount_minor=member.credit_limit_minor,
                currency_code=member.currency_code,
                message="Your credit limit changed",
                payload=None,
            )
            used = members.credit_used(self._repo, member.member_id)
            return settlement_pb2.SetCreditLimitResponse(member=member_to_proto(member, used))

        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            settlement_pb2.SetCreditLimitResponse,
            effect,
        )

    async def RunBilling(
        self, request: settlement_pb2.RunBillingRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.RunBillingResponse:
        if request.max_orders < 0:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT, "FIELD_INVALID", "max_orders: must not be negative"
            )
        before = request.ordered_before.ToDatetime() if request.HasField("ordered_before") else None

        def effect() -> settlement_pb2.RunBillingResponse:
            run = billing.run_billing(self._repo, before, request.max_orders)
            return settlement_pb2.RunBillingResponse(
                billed_order_count=len(run.orders),
                billed_totals=[
                    money(amount, code) for code, amount in sorted(run.totals_minor.items())
                ],
                billed_order_numbers=[order.order_number for order in run.orders],
            )

        return await serve_once(
            self._store, self._repo.idempotency, request, settlement_pb2.RunBillingResponse, effect
        )

    def _order(self, order: SettlementOrderRow) -> settlement_pb2.SettlementOrder:
        """The order with its cancel decision, once one was applied."""
        message = purchases.order_to_proto(order)
        cancellation = statements.find(
            self._repo.cancellations, order_number=order.order_number, status="DONE"
        )
        if cancellation is not None:
            message.cancel_process_result.CopyFrom(cancellations.result(cancellation))
        return message

    async def GetOrder(
        self, request: settlement_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.GetOrderResponse:
        if not request.order_number:
            raise required("order_number")

        def read() -> settlement_pb2.GetOrderResponse:
            row = purchases.get_order(self._repo, request.order_number)
            self._disclose(row.member_id, f"order {row.order_number}", row.order_number)
            return settlement_pb2.GetOrderResponse(order=self._order(row))

        return await self._store.run(read)

    def _disclose(self, member_id: str, data: str, reference: str = "") -> None:
        """Operator authority is scoped, so every read of a member's orders is attributable:
        the member sees it in ListDataDisclosures."""
        disclosures.record(
            self._repo.data_disclosures,
            member_id=member_id,
            kind="OPERATOR_READ",
            recipient=disclosures.operator_uri(),
            data=data,
            purpose=f"operator read through {disclosures.operator_method()}",
            reference=reference,
        )

    async def ListOrders(
        self, request: settlement_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.ListOrdersResponse:
        state = purchases.billing_state_label(request.billing_state)

        def query() -> settlement_pb2.ListOrdersResponse:
            orders = self._repo.orders
            rows = orders.select()
            if request.member_id:
                rows = rows.where(orders.member_id == request.member_id)
            if state:
                rows = rows.where(orders.billing_state == state)
            page, token = by_key(rows, orders.order_number, request, descending=True)
            listed: dict[str, list[str]] = {}
            for row in page:
                listed.setdefault(row.member_id, []).append(row.order_number)
            for member_id, numbers in listed.items():
                self._disclose(member_id, f"orders {', '.join(numbers)} (in a listing)")
            return settlement_pb2.ListOrdersResponse(
                orders=[self._order(row) for row in page], next_page_token=token
            )

        return await self._store.run(query)

    async def ExportFlowRecords(
        self, request: settlement_pb2.ExportFlowRecordsRequest, context: grpc.aio.ServicerContext
    ) -> settlement_pb2.ExportFlowRecordsResponse:
        sections = export.sections(self._repo, self._entity_id)
        records, token = await self._store.run(lambda: flow_export.export_page(sections, request))
        return settlement_pb2.ExportFlowRecordsResponse(flow_records=records, next_page_token=token)
