"""The marketplace's gRPC adapters: proto in, use case, proto out. No business rules here."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc

from nodes.common import disclosures, flow_export
from nodes.common.calls import call_info
from nodes.common.convert import timestamp
from nodes.common.credentials import LoginThrottle, throttled_login
from nodes.common.errors import DomainError, required
from nodes.common.idempotency import serve_once
from nodes.common.interceptor import RpcPolicy, policy
from nodes.common.paging import by_key, newest_first
from nodes.marketplace import (
    catalog,
    credit,
    data_log,
    export,
    members,
    orders,
    reconcile,
    requester,
    supplier,
)
from nodes.marketplace.mediation import Mediator
from nodes.marketplace.partners import Partners
from nodes.marketplace.settings import MarketplaceSettings
from nodes.marketplace.views import (
    disclosure_view,
    invoice_view,
    operator_view,
    payout_view,
    purchaser_invoice_view,
    purchaser_view,
    supplied_view,
)
from storage.common import statements
from storage.common.database import Store
from storage.common.models import utc_now
from storage.marketplace.repository import MarketplaceRepository

R = TypeVar("R", bound=Message)
PACKAGE = "suretynet.marketplace.v1"
AUTHORIZATION_METADATA_KEY = "authorization"


def _methods(service: str) -> list[str]:
    descriptor = pb.DESCRIPTOR.services_by_name[service]
    return [f"/{descriptor.full_name}/{method.name}" for method in descriptor.methods]


# Purchasers come without a certificate and prove themselves with a session token; partner
# marketplaces come with a marketplace certificate; the operator with an admin one.
POLICIES: dict[str, RpcPolicy] = {
    **{method: policy(members=True) for method in _methods("PurchaserService")},
    **{method: policy("marketplace") for method in _methods("MediationService")},
    **{method: policy("admin") for method in _methods("MarketplaceAdminService")},
}


def _label(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix) if value else ""


def _moment(value: Any, field_path: str) -> datetime.datetime | None:
    return value.ToDatetime() if value.seconds or value.nanos else None


async def _settle_quietly(partners: Partners, request_id: str) -> None:
    """Sends a recorded call now if it can; if not, the resume loop will."""
    with contextlib.suppress(DomainError):
        await partners.complete(request_id)


class _Base:
    def __init__(
        self,
        store: Store,
        repo: MarketplaceRepository,
        settings: MarketplaceSettings,
        self_id: str,
        partners: Partners,
    ) -> None:
        self._store = store
        self._repo = repo
        self._settings = settings
        self._self_id = self_id
        self._partners = partners

    async def _once(self, request: Message, kind: type[R], effect: Callable[[], R]) -> R:
        return await serve_once(self._store, self._repo.idempotency, request, kind, effect)


class PurchaserServicer(_Base, marketplace_pb2_grpc.PurchaserServiceServicer):
    """A contract member's access to its marketplace (claim 1 request receiving; claim 5)."""

    def __init__(self, mediator: Mediator, throttle: LoginThrottle, *args: Any) -> None:
        super().__init__(*args)
        self._mediator = mediator
        self._throttle = throttle

    async def _member(self) -> str:
        authorization = call_info().metadata.get(AUTHORIZATION_METADATA_KEY)
        member = await self._store.run(
            lambda: members.authenticate(self._repo, authorization, utc_now())
        )
        return str(member.member_id)

    async def Login(
        self, request: pb.LoginRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoginResponse:
        if not request.member_id:
            raise required("member_id")
        token, member, expires_at = await throttled_login(
            self._throttle,
            request.member_id,
            lambda: self._store.run(
                lambda: members.login(
                    self._repo,
                    request.member_id,
                    request.password,
                    utc_now(),
                    self._settings.session_ttl,
                )
            ),
        )
        return pb.LoginResponse(
            session_token=token,
            expires_at=timestamp(expires_at),
            member=members.member_to_proto(member),
        )

    async def ListCommodities(
        self, request: pb.ListCommoditiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCommoditiesResponse:
        await self._member()

        def query() -> pb.ListCommoditiesResponse:
            table = self._repo.commodities
            rows, token = by_key(table.select(), table.commodity_id, request)
            return pb.ListCommoditiesResponse(
                commodities=[catalog.commodity_to_proto(row) for row in rows],
                next_page_token=token,
            )

        return await self._store.run(query)

    async def RequestPurchase(
        self, request: pb.RequestPurchaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestPurchaseResponse:
        member_id = await self._member()
        return await self._mediator.request_purchase(member_id, call_info().method, request)

    async def ReplyToEstimate(
        self, request: pb.ReplyToEstimateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplyToEstimateResponse:
        member_id = await self._member()
        return await self._mediator.reply(member_id, call_info().method, request)

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTransactionResponse:
        member_id = await self._member()
        row = await self._store.run(
            lambda: orders.owned(self._repo, member_id, request.transaction_id)
        )
        return pb.GetTransactionResponse(transaction=purchaser_view(row))

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTransactionsResponse:
        member_id = await self._member()
        table = self._repo.transactions

        def query() -> pb.ListTransactionsResponse:
            rows, token = newest_first(
                table.select().where(table.member_id == member_id),
                table.created_at,
                table.transaction_id,
                request.page_size,
                request.page_token,
            )
            return pb.ListTransactionsResponse(
                transactions=[purchaser_view(row) for row in rows], next_page_token=token
            )

        return await self._store.run(query)

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelOrderResponse:
        member_id = await self._member()
        return await self._mediator.cancel(member_id, call_info().method, request)

    async def ChangeOrder(
        self, request: pb.ChangeOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeOrderResponse:
        member_id = await self._member()
        return await self._mediator.change(member_id, call_info().method, request)

    async def ReturnGoods(
        self, request: pb.ReturnGoodsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReturnGoodsResponse:
        member_id = await self._member()
        return await self._mediator.return_goods(member_id, call_info().method, request)

    async def ListDataDisclosures(
        self, request: pb.ListDataDisclosuresRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDataDisclosuresResponse:
        member_id = await self._member()

        def query() -> pb.ListDataDisclosuresResponse:
            found, token = disclosures.page(self._repo.data_disclosures, member_id, request)
            return pb.ListDataDisclosuresResponse(data_disclosures=found, next_page_token=token)

        return await self._store.run(query)

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInvoicesResponse:
        member_id = await self._member()
        table = self._repo.invoices

        def query() -> pb.ListInvoicesResponse:
            rows, token = newest_first(
                table.select().where(table.drawee_member_id == member_id),
                table.issued_at,
                table.invoice_id,
                request.page_size,
                request.page_token,
            )
            return pb.ListInvoicesResponse(
                invoices=[purchaser_invoice_view(row) for row in rows], next_page_token=token
            )

        return await self._store.run(query)


class MediationServicer(_Base, marketplace_pb2_grpc.MediationServiceServicer):
    """What partner marketplaces call, over mutual TLS, under a mediation contract."""

    def _caller(self) -> str:
        caller = call_info().caller
        assert caller is not None and caller.role == "marketplace", "the policy admits only these"
        return caller.entity_id

    async def QuoteCommodity(
        self, request: pb.QuoteCommodityRequest, context: grpc.aio.ServicerContext
    ) -> pb.QuoteCommodityResponse:
        caller = self._caller()

        def query() -> pb.QuoteCommodityResponse:
            now = utc_now()
            catalog.require_inbound(self._repo, caller, now)
            return supplier.quote(
                self._repo, request.commodity_id, request.quantity, self._settings, now
            )

        return await self._store.run(query)

    async def RequestMediatedTransaction(
        self, request: pb.RequestMediatedTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestMediatedTransactionResponse:
        caller = self._caller()
        return await self._once(
            request,
            pb.RequestMediatedTransactionResponse,
            lambda: supplier.accept_request(
                self._repo, caller, request, self._self_id, self._settings, utc_now()
            ),
        )

    async def ReplyToMediatedEstimate(
        self, request: pb.ReplyToMediatedEstimateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplyToMediatedEstimateResponse:
        caller = self._caller()
        return await self._once(
            request,
            pb.ReplyToMediatedEstimateResponse,
            lambda: supplier.reply(self._repo, caller, request, self._self_id, utc_now()),
        )

    async def AmendMediatedTransaction(
        self, request: pb.AmendMediatedTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.AmendMediatedTransactionResponse:
        caller = self._caller()
        return await self._once(
            request,
            pb.AmendMediatedTransactionResponse,
            lambda: supplier.amend(
                self._repo, caller, request, self._self_id, self._settings, utc_now()
            ),
        )

    async def GetMediatedTransaction(
        self, request: pb.GetMediatedTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMediatedTransactionResponse:
        caller = self._caller()

        def query() -> pb.MediatedTransaction:
            table = self._repo.transactions
            ours = table.get_or_none(
                (table.mediated_transaction_id == request.mediated_transaction_id)
                & (table.partner_marketplace_id == caller)
            )
            if ours is not None and request.mediated_transaction_id:
                return requester.mediated_view(ours, self._self_id)
            row = supplier.supplied(self._repo, caller, request.mediated_transaction_id)
            return supplied_view(row, self._self_id)

        shared = await self._store.run(query)
        return pb.GetMediatedTransactionResponse(mediated_transaction=shared)

    async def ReportShipment(
        self, request: pb.ReportShipmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReportShipmentResponse:
        caller = self._caller()

        def effect() -> pb.ReportShipmentResponse:
            now = utc_now()
            requester.relay_shipment(
                self._repo, caller, request, self._settings, self._self_id, now
            )
            return pb.ReportShipmentResponse(received_at=timestamp(now))

        response = await self._once(request, pb.ReportShipmentResponse, effect)
        # Delivery started settlement (claims 6-7); send it now rather than on the next
        # resume pass, so the supplier's ShipOrder returns with both sides settled.
        table = self._repo.transactions
        row = await self._store.run(
            lambda: table.get_or_none(
                (table.mediated_transaction_id == request.mediated_transaction_id)
                & (table.partner_marketplace_id == caller)
            )
        )
        if row is not None:
            await _settle_quietly(self._partners, f"{row.transaction_id}:settle")
        return response

    async def SettleMediatedTransaction(
        self, request: pb.SettleMediatedTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.SettleMediatedTransactionResponse:
        caller = self._caller()
        return await self._once(
            request,
            pb.SettleMediatedTransactionResponse,
            lambda: supplier.settle(self._repo, caller, request, self._self_id, utc_now()),
        )

    async def DiscloseFraud(
        self, request: pb.DiscloseFraudRequest, context: grpc.aio.ServicerContext
    ) -> pb.DiscloseFraudResponse:
        caller = self._caller()

        def effect() -> pb.DiscloseFraudResponse:
            now = utc_now()
            supplier.receive_disclosure(
                self._repo, caller, request.fraud_disclosure, self._self_id, now
            )
            return pb.DiscloseFraudResponse(received_at=timestamp(now))

        return await self._once(request, pb.DiscloseFraudResponse, effect)

    async def RecordPurchaserPayment(
        self, request: pb.RecordPurchaserPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPurchaserPaymentResponse:
        caller = self._caller()
        return await self._once(
            request,
            pb.RecordPurchaserPaymentResponse,
            lambda: supplier.receive_payment(self._repo, caller, request, self._self_id, utc_now()),
        )


class MarketplaceAdminServicer(_Base, marketplace_pb2_grpc.MarketplaceAdminServiceServicer):
    """The marketplace operator's console."""

    async def UpsertCommodity(
        self, request: pb.UpsertCommodityRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertCommodityResponse:
        given = request.commodity
        commodity = catalog.CommodityInput(
            commodity_id=given.commodity_id,
            display_name=given.display_name,
            description=given.description,
            unit_price_minor=given.unit_price.amount_minor,
            currency_code=given.unit_price.currency_code,
            stock_quantity=given.stock_quantity,
            delivery_days=given.delivery_days,
        )
        return await self._once(
            request,
            pb.UpsertCommodityResponse,
            lambda: pb.UpsertCommodityResponse(
                commodity=catalog.commodity_to_proto(
                    catalog.upsert_commodity(self._repo, commodity, utc_now())
                )
            ),
        )

    async def EnrollContractMember(
        self, request: pb.EnrollContractMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnrollContractMemberResponse:
        given = request.member
        fields = {
            "member_id": given.member_id,
            "kind": _label(pb.ContractMemberKind, "CONTRACT_MEMBER_KIND_", given.kind),
            "display_name": given.display_name,
            "contact_email": given.contact_email,
            "postal_address": given.postal_address,
            "contact_telephone": given.contact_telephone,
            "corporate_registration_number": given.corporate_registration_number,
        }
        return await self._once(
            request,
            pb.EnrollContractMemberResponse,
            lambda: pb.EnrollContractMemberResponse(
                member=members.member_to_proto(
                    members.enroll(self._repo, fields, request.password, utc_now())
                )
            ),
        )

    async def UpsertMediationContract(
        self, request: pb.UpsertMediationContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertMediationContractResponse:
        given = request.contract
        contract = catalog.ContractInput(
            contract_id=given.contract_id,
            partner_marketplace_id=given.partner_marketplace_id,
            fee_basis_points=given.fee_basis_points,
            settlement_mode=_label(pb.SettlementMode, "SETTLEMENT_MODE_", given.settlement_mode),
            direction=_label(pb.MediationDirection, "MEDIATION_DIRECTION_", given.direction),
            payment_terms_days=given.payment_terms_days,
            active=given.active,
            effective_from=_moment(given.effective_from, "contract.effective_from"),
            effective_until=_moment(given.effective_until, "contract.effective_until"),
        )
        return await self._once(
            request,
            pb.UpsertMediationContractResponse,
            lambda: pb.UpsertMediationContractResponse(
                contract=catalog.contract_to_proto(
                    catalog.upsert_contract(self._repo, contract, self._self_id, utc_now())
                )
            ),
        )

    async def SetCreditStandards(
        self, request: pb.SetCreditStandardsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetCreditStandardsResponse:
        standards = [
            credit.Standard(
                _label(pb.CreditStandardItem, "CREDIT_STANDARD_ITEM_", given.item),
                given.max_count,
                given.window_days,
            )
            for given in request.standards
        ]

        def effect() -> pb.SetCreditStandardsResponse:
            credit.set_standards(self._repo, standards, request.threshold_points, utc_now())
            return pb.SetCreditStandardsResponse(
                credit_standard_set=credit.standard_set(self._repo)
            )

        return await self._once(request, pb.SetCreditStandardsResponse, effect)

    async def RunCreditEnquiry(
        self, request: pb.RunCreditEnquiryRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunCreditEnquiryResponse:
        def enquire() -> pb.CreditEnquiryResult:
            members.get_member(self._repo, request.member_id)
            result = credit.enquire(self._repo, request.member_id, utc_now())
            data_log.credit_enquiry(
                self._repo,
                result,
                by=disclosures.operator_uri(),
                purpose=f"operator's enquiry through {disclosures.operator_method()}",
            )
            return result

        if not request.member_id:
            raise required("member_id")
        result = await self._store.run(enquire)
        return pb.RunCreditEnquiryResponse(credit_enquiry_result=result)

    async def RecordPayment(
        self, request: pb.RecordPaymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordPaymentResponse:
        if not request.invoice_id:
            raise required("invoice_id")

        def effect() -> pb.RecordPaymentResponse:
            now = utc_now()
            paid_at = request.paid_at.ToDatetime() if request.HasField("paid_at") else now
            return pb.RecordPaymentResponse(
                invoice=requester.relay_payment(
                    self._repo,
                    request.invoice_id,
                    request.amount.amount_minor,
                    request.amount.currency_code,
                    paid_at,
                    self._self_id,
                    self._settings,
                    now,
                )
            )

        response = await self._once(request, pb.RecordPaymentResponse, effect)
        invoice = response.invoice
        if invoice.issuer_marketplace_id != self._self_id:
            await _settle_quietly(
                self._partners,
                f"{invoice.invoice_id}:payment:{invoice.paid_amount.amount_minor}",
            )
        return response

    async def ShipOrder(
        self, request: pb.ShipOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShipOrderResponse:
        if not request.transaction_id:
            raise required("transaction_id")
        update = orders.ShipmentInput(
            status=_label(pb.ShipmentStatus, "SHIPMENT_STATUS_", request.status),
            carrier=request.carrier,
            tracking_number=request.tracking_number,
            estimated_delivery_at=_moment(request.estimated_delivery_at, "estimated_delivery_at"),
            note=request.note,
        )

        def effect() -> pb.ShipOrderResponse:
            return pb.ShipOrderResponse(
                shipment=supplier.ship_order(
                    self._repo,
                    request.transaction_id,
                    update,
                    self_id=self._self_id,
                    settings=self._settings,
                    now=utc_now(),
                )
            )

        response = await self._once(request, pb.ShipOrderResponse, effect)
        await _settle_quietly(self._partners, f"{request.transaction_id}:shipment:{update.status}")
        return response

    async def MarkTransactionUnlawful(
        self, request: pb.MarkTransactionUnlawfulRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkTransactionUnlawfulResponse:
        if not request.transaction_id:
            raise required("transaction_id")
        if not request.reason:
            raise required("reason")

        def effect() -> pb.MarkTransactionUnlawfulResponse:
            now = utc_now()
            row = orders.owned(self._repo, None, request.transaction_id)
            disclosure = requester.mark_unlawful(
                self._repo, row, request.reason, self._self_id, self._settings, now
            )
            enquiry = self._enquiry(row.credit_enquiry_id)
            return pb.MarkTransactionUnlawfulResponse(
                transaction=operator_view(row, enquiry), fraud_disclosure=disclosure
            )

        response = await self._once(request, pb.MarkTransactionUnlawfulResponse, effect)
        if response.HasField("fraud_disclosure"):
            await _settle_quietly(self._partners, f"{request.transaction_id}:disclose")
        return response

    def _enquiry(self, credit_enquiry_id: str) -> pb.CreditEnquiryResult | None:
        if not credit_enquiry_id:
            return None
        row = statements.find(self._repo.enquiries, credit_enquiry_id=credit_enquiry_id)
        return None if row is None else pb.CreditEnquiryResult.FromString(bytes(row.result))

    async def GetTransactionDetail(
        self, request: pb.GetTransactionDetailRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTransactionDetailResponse:
        def query() -> pb.GetTransactionDetailResponse:
            row = orders.owned(self._repo, None, request.transaction_id)
            return pb.GetTransactionDetailResponse(
                transaction=operator_view(row, self._enquiry(row.credit_enquiry_id))
            )

        if not request.transaction_id:
            raise required("transaction_id")
        return await self._store.run(query)

    async def ListInvoices(
        self,
        request: pb.MarketplaceAdminServiceListInvoicesRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.MarketplaceAdminServiceListInvoicesResponse:
        table = self._repo.invoices
        kind = _label(pb.InvoiceKind, "INVOICE_KIND_", request.kind)
        status = _label(pb.InvoiceStatus, "INVOICE_STATUS_", request.status)

        def query() -> pb.MarketplaceAdminServiceListInvoicesResponse:
            selected = table.select()
            if kind:
                selected = selected.where(table.kind == kind)
            if status:
                selected = selected.where(table.status == status)
            rows, token = newest_first(
                selected, table.issued_at, table.invoice_id, request.page_size, request.page_token
            )
            return pb.MarketplaceAdminServiceListInvoicesResponse(
                invoices=[invoice_view(row) for row in rows], next_page_token=token
            )

        return await self._store.run(query)

    async def ListPayouts(
        self, request: pb.ListPayoutsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPayoutsResponse:
        table = self._repo.payouts

        def query() -> pb.ListPayoutsResponse:
            rows, token = newest_first(
                table.select(),
                table.created_at,
                table.payout_id,
                request.page_size,
                request.page_token,
            )
            return pb.ListPayoutsResponse(
                payouts=[payout_view(row) for row in rows], next_page_token=token
            )

        return await self._store.run(query)

    async def Reconcile(
        self, request: pb.ReconcileRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReconcileResponse:
        start = request.period_start.ToDatetime() if request.HasField("period_start") else None
        end = request.period_end.ToDatetime() if request.HasField("period_end") else None
        return await self._store.run(
            lambda: reconcile.reconcile(self._repo, self._self_id, start, end)
        )

    async def ListFraudDisclosures(
        self, request: pb.ListFraudDisclosuresRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFraudDisclosuresResponse:
        table = self._repo.disclosures
        direction = _label(pb.DisclosureDirection, "DISCLOSURE_DIRECTION_", request.direction)

        def query() -> pb.ListFraudDisclosuresResponse:
            selected = table.select()
            if direction:
                selected = selected.where(table.direction == direction)
            rows, token = newest_first(
                selected,
                table.recorded_at,
                table.disclosure_id,
                request.page_size,
                request.page_token,
            )
            return pb.ListFraudDisclosuresResponse(
                fraud_disclosures=[disclosure_view(row) for row in rows], next_page_token=token
            )

        return await self._store.run(query)

    async def ExportFlowRecords(
        self, request: pb.ExportFlowRecordsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportFlowRecordsResponse:
        sections = export.sections(self._repo, self._self_id)
        records, token = await self._store.run(lambda: flow_export.export_page(sections, request))
        return pb.ExportFlowRecordsResponse(flow_records=records, next_page_token=token)
