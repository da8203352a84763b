"""Operator commands against a running network's agencies and shops (admin certificate).

``suretynet settlement --network N --agency agency-1 run-billing | enroll-member | ...``
``suretynet shop --network N --shop shop-1 cancel-order | sales-records | ...``
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

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
    else:
        response = await stub.ListGuaranteeCache(
            retail_pb2.ListGuaranteeCacheRequest(), timeout=TIMEOUT_S
        )
    return response


def _run(args: argparse.Namespace) -> int:
    entity = args.agency if args.command == "settlement" else args.shop

    async def call() -> Message:
        # The channel belongs to the event loop it is made in.
        async with _channel(args, entity) as channel:
            if args.command == "settlement":
                return await _settlement(args, channel)
            return await _shop(args, channel)

    print_message(asyncio.run(call()))
    return 0


def add_parsers(commands: Any) -> None:
    """Adds ``settlement`` and ``shop`` operator commands to the ``suretynet`` parser."""
    agency = commands.add_parser("settlement", help="a settlement agency's admin calls")
    agency.add_argument("--network", required=True, help="network.json written by 'up'")
    agency.add_argument("--agency", required=True, help="agency entity ID, e.g. agency-1")
    sub = agency.add_subparsers(dest="settlement_command", required=True)
    billing = sub.add_parser("run-billing", help="post pending charges (billed vs not yet)")
    billing.add_argument("--request-id")
    enroll = sub.add_parser("enroll-member", help="enrol a member with a credit limit")
    enroll.add_argument("--member-id", required=True)
    enroll.add_argument("--name", required=True)
    enroll.add_argument("--password", required=True)
    enroll.add_argument("--credit-limit-minor", type=int, required=True)
    enroll.add_argument("--currency", default="USD")
    enroll.add_argument("--request-id")
    limit = sub.add_parser("set-credit-limit", help="change a member's credit limit")
    limit.add_argument("--member-id", required=True)
    limit.add_argument("--credit-limit-minor", type=int, required=True)
    limit.add_argument("--currency", default="USD")
    limit.add_argument("--request-id")
    order = sub.add_parser("get-order", help="one order with its member and billing state")
    order.add_argument("--order-number", required=True)
    orders = sub.add_parser("list-orders", help="orders, newest first")
    orders.add_argument("--member-id")
    agency.set_defaults(handler=_run)

    shop = commands.add_parser("shop", help="a shop operator's admin calls")
    shop.add_argument("--network", required=True, help="network.json written by 'up'")
    shop.add_argument("--shop", required=True, help="shop entity ID, e.g. shop-1")
    shop_sub = shop.add_subparsers(dest="shop_command", required=True)
    cancel = shop_sub.add_parser("cancel-order", help="cancel an order (claims 2-3)")
    cancel.add_argument("--order-number", required=True)
    cancel.add_argument("--reason", default="")
    cancel.add_argument("--request-id")
    record = shop_sub.add_parser("sales-record", help="one sales record")
    record.add_argument("--order-number", required=True)
    shop_sub.add_parser("sales-records", help="sales records, newest first")
    shop_sub.add_parser("guarantee-cache", help="the settlement agency guarantees cached")
    shop.set_defaults(handler=_run)
