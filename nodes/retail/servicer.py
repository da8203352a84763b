"""Retail's gRPC adapters: the shop (members), deliveries from peers, and the admin console."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import flow_export
from nodes.common.calls import certificate_caller
from nodes.common.convert import timestamp
from nodes.common.errors import required
from nodes.common.idempotency import remember_served, serve_once, served_answer
from nodes.common.interceptor import policy
from nodes.common.node import NodeRuntime
from nodes.common.paging import by_key
from nodes.retail import anonymous_ids, catalog, export, guarantee_cache, orders
from nodes.retail.cancellation import CancellationFlow, CancelRequest
from nodes.retail.discovery import Discovery
from nodes.retail.peers import RetailPeers
from nodes.retail.purchase import PurchaseFlow
from storage.common.database import Store
from storage.common.models import utc_now
from storage.retail.repository import RetailRepository

R = TypeVar("R", bound=Message)

SHOP = "/suretynet.retail.v1.ShopService/"
ANONYMOUS_ID = "/suretynet.retail.v1.AnonymousIdService/"
RECEIVER = "/suretynet.retail.v1.GuaranteeReceiverService/"
ADMIN = "/suretynet.retail.v1.RetailAdminService/"

POLICIES = {
    **{
        SHOP + name: policy(members=True)
        for name in (
            "ListCatalog",
            "GetPaymentInformation",
            "PlaceOrder",
            "GetOrder",
            "RequestCancellation",
        )
    },
    ANONYMOUS_ID + "DeliverAnonymousUserId": policy("settlement"),
    RECEIVER + "DeliverSettlementAgencyGuarantee": policy("approval"),
    **{
        ADMIN + name: policy("admin")
        for name in (
            "UpsertCatalogItem",
            "CancelOrder",
            "GetSalesRecord",
            "ListSalesRecords",
            "RefreshGuaranteeCache",
            "ListGuaranteeCache",
            "ExportFlowRecords",
        )
    },
}


async def _cancel_once(
    store: Store,
    repo: RetailRepository,
    flow: CancellationFlow,
    request: Message,
    cancel: CancelRequest,
    response_type: type[R],
    scope: str | None = None,
) -> R:
    """Runs a cancellation for an RPC with a request_id: replay, cancel, remember."""
    stored = await served_answer(store, repo.idempotency, request, response_type, scope=scope)
    if stored is not None:
        return stored
    outcome = await flow.cancel(cancel)
    answer = response_type()
    answer.ParseFromString(outcome.SerializeToString())
    return await store.run(lambda: remember_served(repo.idempotency, request, answer, scope=scope))


class ShopServicer(retail_pb2_grpc.ShopServiceServicer):
    """The member-facing shop; buyers are known only by their anonymous user IDs."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: RetailRepository,
        peers: RetailPeers,
        flow: PurchaseFlow,
        cancellations: CancellationFlow,
    ) -> None:
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self._flow = flow
        self._cancellations = cancellations

    async def ListCatalog(
        self, request: retail_pb2.ListCatalogRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.ListCatalogResponse:

        def query() -> retail_pb2.ListCatalogResponse:
            table = self._repo.catalog
            rows, token = by_key(table.select(), table.catalog_item_id, request)
            return retail_pb2.ListCatalogResponse(
                catalog_items=[catalog.item_to_proto(row) for row in rows],
                next_page_token=token,
            )

        return await self._store.run(query)

    async def GetPaymentInformation(
        self, request: retail_pb2.GetPaymentInformationRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.GetPaymentInformationResponse:
        return retail_pb2.GetPaymentInformationResponse(
            payment_information=await self._peers.payment_information()
        )

    async def PlaceOrder(
        self, request: retail_pb2.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.PlaceOrderResponse:
        return await self._flow.place_order(request)

    async def GetOrder(
        self, request: retail_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.GetOrderResponse:
        row = await self._store.run(
            lambda: orders.buyers_order(self._repo, request.order_number, request.anonymous_user_id)
        )
        return retail_pb2.GetOrderResponse(order=orders.order_to_proto(row))

    async def RequestCancellation(
        self, request: retail_pb2.RequestCancellationRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.RequestCancellationResponse:
        if not request.order_number:
            raise required("order_number")
        if not request.anonymous_user_id:
            raise required("anonymous_user_id")
        return await _cancel_once(
            self._store,
            self._repo,
            self._cancellations,
            request,
            CancelRequest(
                request.order_number,
                types_pb2.CANCEL_REQUESTER_MEMBER,
                request.reason,
                anonymous_user_id=request.anonymous_user_id,
            ),
            retail_pb2.RequestCancellationResponse,
            # Shoppers have no identity but their anonymous user ID: scope their keys by it.
            scope=f"shopper:{request.anonymous_user_id}",
        )


class AnonymousIdServicer(retail_pb2_grpc.AnonymousIdServiceServicer):
    """Receives anonymous user IDs from the agencies that issued them (claim 1)."""

    def __init__(self, runtime: NodeRuntime, repo: RetailRepository, peers: RetailPeers) -> None:
        self._runtime = runtime
        self._repo = repo
        self._peers = peers

    async def DeliverAnonymousUserId(
        self, request: retail_pb2.DeliverAnonymousUserIdRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.DeliverAnonymousUserIdResponse:
        caller = certificate_caller()
        agency = await self._peers.related_settlement_agency(caller.entity_id)
        anonymous_ids.check_delivery(
            request.anonymous_user_id,
            shop_id=self._runtime.config.entity_id,
            agency_id=request.settlement_agency_id,
            caller_agency_id=caller.entity_id,
            caller_routing_prefix=agency.routing_prefix,
        )

        def effect() -> retail_pb2.DeliverAnonymousUserIdResponse:
            row = anonymous_ids.store_delivered(
                self._repo, request.anonymous_user_id, caller.entity_id
            )
            return retail_pb2.DeliverAnonymousUserIdResponse(received_at=timestamp(row.received_at))

        return await serve_once(
            self._runtime.store,
            self._repo.idempotency,
            request,
            retail_pb2.DeliverAnonymousUserIdResponse,
            effect,
        )


class GuaranteeReceiverServicer(retail_pb2_grpc.GuaranteeReceiverServiceServicer):
    """Receives approval's pushed guarantees (claim 10)."""

    def __init__(self, runtime: NodeRuntime, repo: RetailRepository, discovery: Discovery) -> None:
        self._store = runtime.store
        self._repo = repo
        self._discovery = discovery

    async def DeliverSettlementAgencyGuarantee(
        self,
        request: retail_pb2.DeliverSettlementAgencyGuaranteeRequest,
        context: grpc.aio.ServicerContext,
    ) -> retail_pb2.DeliverSettlementAgencyGuaranteeResponse:
        if not request.guarantee.settlement_agency_id:
            raise required("guarantee.settlement_agency_id")
        applied, gap, serial = await self._store.run(
            lambda: guarantee_cache.receive_push(
                self._repo,
                request.guarantee,
                request.registry_serial,
                request.previous_registry_serial,
            )
        )
        if gap and self._discovery.catches_up:
            # Pushes were missed (the shop was down, or lost its state): catch up now.
            await self._discovery.catch_up()
            serial = (await self._store.run(self._repo.state)).registry_serial
        return retail_pb2.DeliverSettlementAgencyGuaranteeResponse(
            applied=applied, cache_registry_serial=serial
        )


class RetailAdminServicer(retail_pb2_grpc.RetailAdminServiceServicer):
    """The shop operator's console: catalog, cancellations, sales records, guarantee cache."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: RetailRepository,
        discovery: Discovery,
        cancellations: CancellationFlow,
    ) -> None:
        self._store = runtime.store
        self._repo = repo
        self._discovery = discovery
        self._cancellations = cancellations
        self._entity_id = runtime.config.entity_id

    async def CancelOrder(
        self, request: retail_pb2.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.CancelOrderResponse:
        if not request.order_number:
            raise required("order_number")
        return await _cancel_once(
            self._store,
            self._repo,
            self._cancellations,
            request,
            CancelRequest(
                request.order_number, types_pb2.CANCEL_REQUESTER_RETAIL_ENTITY, request.reason
            ),
            retail_pb2.CancelOrderResponse,
        )

    async def UpsertCatalogItem(
        self, request: retail_pb2.UpsertCatalogItemRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.UpsertCatalogItemResponse:
        return await serve_once(
            self._store,
            self._repo.idempotency,
            request,
            retail_pb2.UpsertCatalogItemResponse,
            lambda: retail_pb2.UpsertCatalogItemResponse(
                catalog_item=catalog.item_to_proto(
                    catalog.upsert_item(self._repo, request.catalog_item)
                )
            ),
        )

    async def GetSalesRecord(
        self, request: retail_pb2.GetSalesRecordRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.GetSalesRecordResponse:
        if not request.order_number:
            raise required("order_number")
        row = await self._store.run(
            lambda: orders.get_sales_record(self._repo, request.order_number)
        )
        return retail_pb2.GetSalesRecordResponse(sales_record=orders.sales_record_to_proto(row))

    async def ListSalesRecords(
        self, request: retail_pb2.ListSalesRecordsRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.ListSalesRecordsResponse:
        since = request.recorded_since.ToDatetime() if request.HasField("recorded_since") else None

        def query() -> retail_pb2.ListSalesRecordsResponse:
            table = self._repo.sales
            rows = table.select()
            if since is not None:
                rows = rows.where(table.recorded_at >= since)
            page, token = by_key(rows, table.order_number, request, descending=True)
            return retail_pb2.ListSalesRecordsResponse(
                sales_records=[orders.sales_record_to_proto(row) for row in page],
                next_page_token=token,
            )

        return await self._store.run(query)

    async def RefreshGuaranteeCache(
        self, request: retail_pb2.RefreshGuaranteeCacheRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.RefreshGuaranteeCacheResponse:
        repo = self._repo
        stored = await served_answer(
            self._store, repo.idempotency, request, retail_pb2.RefreshGuaranteeCacheResponse
        )
        if stored is not None:
            return stored
        changed = await self._discovery.refresh(full=request.full_refresh)

        def finish() -> retail_pb2.RefreshGuaranteeCacheResponse:
            state = repo.state()
            return remember_served(
                repo.idempotency,
                request,
                retail_pb2.RefreshGuaranteeCacheResponse(
                    changed_guarantee_count=changed,
                    cache_registry_serial=state.registry_serial,
                    refreshed_at=timestamp(state.refreshed_at or utc_now()),
                ),
            )

        return await self._store.run(finish)

    async def ListGuaranteeCache(
        self, request: retail_pb2.ListGuaranteeCacheRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.ListGuaranteeCacheResponse:

        def query() -> retail_pb2.ListGuaranteeCacheResponse:
            table = self._repo.guarantees
            state = self._repo.state()
            rows, token = by_key(table.select(), table.routing_prefix, request)
            return retail_pb2.ListGuaranteeCacheResponse(
                guarantees=[guarantee_cache.to_proto(row) for row in rows],
                cache_registry_serial=state.registry_serial,
                refreshed_at=timestamp(state.refreshed_at),
                next_page_token=token,
            )

        return await self._store.run(query)

    async def ExportFlowRecords(
        self, request: retail_pb2.ExportFlowRecordsRequest, context: grpc.aio.ServicerContext
    ) -> retail_pb2.ExportFlowRecordsResponse:
        sections = export.sections(self._repo, self._entity_id)
        records, token = await self._store.run(lambda: flow_export.export_page(sections, request))
        return retail_pb2.ExportFlowRecordsResponse(flow_records=records, next_page_token=token)
