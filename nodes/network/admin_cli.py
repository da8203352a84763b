"""Operator commands against a running network's nodes (admin certificate).

``suretynet settlement --network N --agency agency-1 run-billing | enroll-member | ...``
``suretynet shop --network N --shop shop-1 cancel-order | catalog | upsert-item | ...``
``suretynet verification --network N transaction-report | cancellation-record``
``suretynet marketplace --network N --market market-1 transaction | invoices | ...``
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from suretynet.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import tls
from nodes.common.convert import money
from nodes.common.output import print_message

TIMEOUT_S = 30.0


def _channel(args: argparse.Namespace, entity_id: str) -> grpc.aio.Channel:
    from nodes.network.descriptor import find_node, load_network

    manifest = load_network(args.network)
    node = find_node(manifest, entity_id, path=args.network)
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    return grpc.aio.secure_channel(node["address"], credentials)


def _request_id(args: argparse.Namespace) -> str:
    return str(args.request_id or uuid.uuid4().hex)


async def _settlement(args: argparse.Namespace, channel: grpc.aio.Channel) -> Message:
    stub = settlement_pb2_grpc.SettlementAdminServiceStub(channel)
    command = args.settlement_command
    response: Message
    if command == "run-billing":
        response = await stub.RunBilling(
            settlement_pb2.RunBillingRequest(request_id=_request_id(args)), timeout=TIMEOUT_S
        )
    elif command == "enroll-member":
        response = await stub.EnrollMember(
            settlement_pb2.EnrollMemberRequest(
                request_id=_request_id(args),
                member_id=args.member_id,
                display_name=args.name,
                password=args.password,
                credit_limit=money(args.credit_limit_minor, args.currency),
            ),
            timeout=TIMEOUT_S,
        )
    elif command == "set-credit-limit":
        response = await stub.SetCreditLimit(
            settlement_pb2.SetCreditLimitRequest(
                request_id=_request_id(args),
                member_id=args.member_id,
                credit_limit=money(args.credit_limit_minor, args.currency),
            ),
            timeout=TIMEOUT_S,
        )
    elif command == "get-order":
        response = await stub.GetOrder(
            settlement_pb2.GetOrderRequest(order_number=args.order_number), timeout=TIMEOUT_S
        )
    else:
        response = await stub.ListOrders(
            settlement_pb2.ListOrdersRequest(member_id=args.member_id or ""), timeout=TIMEOUT_S
        )
    return response


async def _shop(args: argparse.Namespace, channel: grpc.aio.Channel) -> Message:
    stub = retail_pb2_grpc.RetailAdminServiceStub(channel)
    response: Message
    if args.shop_command == "cancel-order":
        response = await stub.CancelOrder(
            retail_pb2.CancelOrderRequest(
                request_id=_request_id(args), order_number=args.order_number, reason=args.reason
            ),
            timeout=TIMEOUT_S,
        )
    elif args.shop_command == "sales-record":
        response = await stub.GetSalesRecord(
            retail_pb2.GetSalesRecordRequest(order_number=args.order_number), timeout=TIMEOUT_S
        )
    elif args.shop_command == "sales-records":
        response = await stub.ListSalesRecords(
            retail_pb2.ListSalesRecordsRequest(), timeout=TIMEOUT_S
        )
    elif args.shop_command == "upsert-item":
        response = await stub.UpsertCatalogItem(
            retail_pb2.UpsertCatalogItemRequest(
                request_id=_request_id(args),
                catalog_item=retail_pb2.CatalogItem(
                    catalog_item_id=args.item_id,
                    display_name=args.name,
                    description=args.description,
                    unit_price=money(args.price_minor, args.currency),
                    available=not args.unavailable,
                ),
            ),
            timeout=TIMEOUT_S,
        )
    else:
        response = await stub.ListGuaranteeCache(
            retail_pb2.ListGuaranteeCacheRequest(), timeout=TIMEOUT_S
        )
    return response


async def _verification(args: argparse.Namespace, channel: grpc.aio.Channel) -> Message:
    stub = verification_pb2_grpc.VerificationServiceStub(channel)
    response: Message
    if args.verification_command == "transaction-report":
        response = await stub.GetTransactionReport(
            verification_pb2.GetTransactionReportRequest(order_number=args.order_number),
            timeout=TIMEOUT_S,
        )
    else:
        response = await stub.GetCancellationRecord(
            verification_pb2.GetCancellationRecordRequest(order_number=args.order_number),
            timeout=TIMEOUT_S,
        )
    return response


async def _marketplace(args: argparse.Namespace, channel: grpc.aio.Channel) -> Message:
    stub = marketplace_pb2_grpc.MarketplaceAdminServiceStub(channel)
    command = args.marketplace_command
    response: Message
    if command == "transaction":
        response = await stub.GetTransactionDetail(
            marketplace_pb2.GetTransactionDetailRequest(transaction_id=args.transaction_id),
            timeout=TIMEOUT_S,
        )
    elif command == "invoices":
        response = await stub.ListInvoices(
            marketplace_pb2.MarketplaceAdminServiceListInvoicesRequest(), timeout=TIMEOUT_S
        )
    elif command == "payouts":
        response = await stub.ListPayouts(marketplace_pb2.ListPayoutsRequest(), timeout=TIMEOUT_S)
    elif command == "reconcile":
        response = await stub.Reconcile(marketplace_pb2.ReconcileRequest(), timeout=TIMEOUT_S)
    else:
        response = await stub.UpsertCommodity(
            marketplace_pb2.UpsertCommodityRequest(
                request_id=_request_id(args),
                commodity=marketplace_pb2.Commodity(
                    commodity_id=args.commodity_id,
                    display_name=args.name,
                    description=args.description,
                    unit_price=money(args.price_minor, args.currency),
                    stock_quantity=args.stock,
                    delivery_days=args.delivery_days,
                ),
            ),
            timeout=TIMEOUT_S,
        )
    return response


async def _catalog(args: argparse.Namespace) -> int:
    """A shop's catalog as members see it (the member port: no admin certificate needed)."""
    from nodes.member.client import ShopClient
    from nodes.network.descriptor import find_node, load_network

    manifest = load_network(args.network)
    node = find_node(manifest, args.shop, path=args.network)
    if not node.get("member_address"):
        raise ValueError(f"{args.network} gives no member_address for {args.shop!r}")
    async with ShopClient(node["member_address"], Path(manifest["ca"]).read_bytes()) as client:
        for item in await client.catalog():
            print_message(item)
    return 0


HANDLERS = {
    "settlement": ("agency", _settlement),
    "shop": ("shop", _shop),
    "verification": ("", _verification),
    "marketplace": ("market", _marketplace),
}


def _run(args: argparse.Namespace) -> int:
    if args.command == "shop" and args.shop_command == "catalog":
        return asyncio.run(_catalog(args))
    attribute, handler = HANDLERS[args.command]
    entity = getattr(args, attribute) if attribute else _verification_entity(args)

    async def call() -> Message:
        # The channel belongs to the event loop it is made in.
        async with _channel(args, entity) as channel:
            return await handler(args, channel)

    print_message(asyncio.run(call()))
    return 0


def _verification_entity(args: argparse.Namespace) -> str:
    from nodes.network.descriptor import find_role, load_network

    return str(
        find_role(load_network(args.network), "verification", path=args.network)["entity_id"]
    )


NETWORK_HELP = "the network descriptor (network.json written by 'up' or 'network add-node')"
REQUEST_ID_HELP = "idempotency key (default: a new one); reuse it to retry the same request"
CURRENCY_HELP = "ISO 4217 currency code (default: USD)"


def add_parsers(commands: Any) -> None:
    """Adds the node operators' commands to the ``suretynet`` parser."""
    agency = commands.add_parser("settlement", help="a settlement agency's admin calls")
    agency.add_argument("--network", required=True, help=NETWORK_HELP)
    agency.add_argument("--agency", required=True, help="agency entity ID, e.g. agency-1")
    sub = agency.add_subparsers(dest="settlement_command", required=True)
    billing = sub.add_parser("run-billing", help="post pending charges (billed vs not yet)")
    billing.add_argument("--request-id", help=REQUEST_ID_HELP)
    enroll = sub.add_parser("enroll-member", help="enrol a member with a credit limit")
    enroll.add_argument("--member-id", required=True, help="the member's ID at this agency")
    enroll.add_argument("--name", required=True, help="the member's display name")
    enroll.add_argument("--password", required=True, help="the member's initial password")
    enroll.add_argument(
        "--credit-limit-minor", type=int, required=True, help="credit limit in minor units"
    )
    enroll.add_argument("--currency", default="USD", help=CURRENCY_HELP)
    enroll.add_argument("--request-id", help=REQUEST_ID_HELP)
    limit = sub.add_parser("set-credit-limit", help="change a member's credit limit")
    limit.add_argument("--member-id", required=True, help="the member's ID at this agency")
    limit.add_argument(
        "--credit-limit-minor", type=int, required=True, help="new credit limit in minor units"
    )
    limit.add_argument("--currency", default="USD", help=CURRENCY_HELP)
    limit.add_argument("--request-id", help=REQUEST_ID_HELP)
    order = sub.add_parser("get-order", help="one order with its member and billing state")
    order.add_argument("--order-number", required=True, help="the order number")
    orders = sub.add_parser("list-orders", help="orders, newest first")
    orders.add_argument("--member-id", help="only this member's orders")
    agency.set_defaults(handler=_run)

    shop = commands.add_parser("shop", help="a shop operator's admin calls")
    shop.add_argument("--network", required=True, help=NETWORK_HELP)
    shop.add_argument("--shop", required=True, help="shop entity ID, e.g. shop-1")
    shop_sub = shop.add_subparsers(dest="shop_command", required=True)
    cancel = shop_sub.add_parser("cancel-order", help="cancel an order (claims 2-3)")
    cancel.add_argument("--order-number", required=True, help="the order number")
    cancel.add_argument("--reason", default="", help="why, for the records")
    cancel.add_argument("--request-id", help=REQUEST_ID_HELP)
    record = shop_sub.add_parser("sales-record", help="one sales record")
    record.add_argument("--order-number", required=True, help="the order number")
    shop_sub.add_parser("sales-records", help="sales records, newest first")
    shop_sub.add_parser("guarantee-cache", help="the settlement agency guarantees cached")
    shop_sub.add_parser("catalog", help="the catalog as members see it")
    item = shop_sub.add_parser("upsert-item", help="put an item on sale, or change one")
    item.add_argument("--item-id", required=True, help="catalog item ID, e.g. tea")
    item.add_argument("--name", required=True, help="display name")
    item.add_argument("--description", default="", help="description shown to members")
    item.add_argument("--price-minor", type=int, required=True, help="unit price in minor units")
    item.add_argument("--currency", default="USD", help=CURRENCY_HELP)
    item.add_argument(
        "--unavailable", action="store_true", help="list it but take no orders for it"
    )
    item.add_argument("--request-id", help=REQUEST_ID_HELP)
    shop.set_defaults(handler=_run)

    verification = commands.add_parser(
        "verification", help="the institution's look-ups at the verification node"
    )
    verification.add_argument("--network", required=True, help=NETWORK_HELP)
    verification_sub = verification.add_subparsers(dest="verification_command", required=True)
    for name, help_text in (
        ("transaction-report", "the transaction report an agency filed for an order"),
        ("cancellation-record", "the cancel notices and verification of an order"),
    ):
        command = verification_sub.add_parser(name, help=help_text)
        command.add_argument("--order-number", required=True, help="the order number")
    verification.set_defaults(handler=_run)

    market = commands.add_parser("marketplace", help="a marketplace operator's admin calls")
    market.add_argument("--network", required=True, help=NETWORK_HELP)
    market.add_argument("--market", required=True, help="marketplace entity ID, e.g. market-1")
    market_sub = market.add_subparsers(dest="marketplace_command", required=True)
    transaction = market_sub.add_parser(
        "transaction",
        help="a transaction with its partner and guarantee (what purchasers never see)",
    )
    transaction.add_argument("--transaction-id", required=True, help="the transaction ID")
    market_sub.add_parser("invoices", help="invoices issued and received")
    market_sub.add_parser("payouts", help="payouts to partner marketplaces")
    market_sub.add_parser("reconcile", help="invoices, payouts and charges balanced")
    commodity = market_sub.add_parser("upsert-commodity", help="stock a commodity, or change one")
    commodity.add_argument("--commodity-id", required=True, help="commodity ID")
    commodity.add_argument("--name", required=True, help="display name")
    commodity.add_argument("--description", default="", help="description")
    commodity.add_argument(
        "--price-minor", type=int, required=True, help="unit price in minor units"
    )
    commodity.add_argument("--currency", default="JPY", help="ISO 4217 code (default: JPY)")
    commodity.add_argument("--stock", type=int, default=0, help="units in stock")
    commodity.add_argument("--delivery-days", type=int, default=3, help="days to deliver")
    commodity.add_argument("--request-id", help=REQUEST_ID_HELP)
    market.set_defaults(handler=_run)
