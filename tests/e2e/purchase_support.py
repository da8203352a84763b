"""Helpers for end-to-end purchase tests: buying as a member, reading every node's record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import tomllib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo_data import members_of
from nodes.network.flows.purchase import wait_for_cached_agency
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec

# The network every purchase test module runs: one shop per discovery variant, plus an
# agency whose anonymous user IDs expire within seconds.
SHORT_ID_AGENCY = "agency-9"
SHOP_3_PRIVATE_DETAILS = {
    "legal_name": "Shop Three Trading Ltd.",
    "business_address": "3 Market Street, Springfield",
    "contact_email": "orders@shop-3.example",
    "contact_telephone": "+81312345678",
    "statement_descriptor": "SHOP3*ORDER",
    "return_policy": "Returns within 14 days.",
}
PURCHASE_TOPOLOGY: tuple[NodeSpec, ...] = (
    # The institution and both agencies exactly as `suretynet up` runs them.
    *(spec for spec in DEFAULT_TOPOLOGY if spec.role in ("approval", "verification", "settlement")),
    NodeSpec(
        "settlement",
        SHORT_ID_AGENCY,
        "Short-ID Agency",
        {"routing_prefix": "7999", "anonymous_id_validity_s": 1},
        True,
    ),
    NodeSpec(
        "retail",
        "shop-1",
        "Shop One",
        {"discovery": "directory", "cancel_procedure": "notified"},
        True,
    ),
    NodeSpec(
        "retail", "shop-2", "Shop Two", {"discovery": "push", "cancel_procedure": "verified"}, True
    ),
    NodeSpec(
        "retail",
        "shop-3",
        "Shop Three",
        {
            "discovery": "cache",
            "cache_refresh_interval_s": 1,
            "cache_max_staleness_s": 60,
            # What approval hands out as shop-3's payment information (step 2).
            "payment_methods": ["single_payment", "installments"],
            "private_details": SHOP_3_PRIVATE_DETAILS,
        },
        True,
    ),
)
VARIANT_SHOPS = {"directory": "shop-1", "push": "shop-2", "cache": "shop-3"}
PROCEDURE_SHOPS = {"notified": "shop-1", "verified": "shop-2"}


@dataclass
class Purchase:
    """What a member's purchase left: the order and the ID it used."""

    order: retail_pb2.ShopOrder
    anonymous_user_id: str
    session_token: str


def password_of(agency: str, member_id: str) -> str:
    return next(m.password for m in members_of(agency) if m.member_id == member_id)


async def anonymous_id(
    network: LocalNetwork, agency: str, member_id: str, shop: str, trace_id: str = ""
) -> tuple[str, str]:
    """Logs the member in and gets its anonymous user ID for ``shop``: (ID, session token)."""
    ca = network.ca.read_bytes()
    async with AgencyClient(network.node(agency).member_address, ca, trace_id=trace_id) as client:
        await client.login(member_id, password_of(agency, member_id))
        issued = await client.anonymous_user_id(shop)
        return issued.anonymous_user_id.value, client.session_token


async def buy(
    network: LocalNetwork,
    agency: str,
    member_id: str,
    shop: str,
    items: list[tuple[str, int]],
    trace_id: str = "",
) -> Purchase:
    """A member's whole purchase: login, anonymous ID, order at the shop."""
    value, token = await anonymous_id(network, agency, member_id, shop, trace_id)
    ca = network.ca.read_bytes()
    async with ShopClient(network.node(shop).member_address, ca, trace_id=trace_id) as client:
        order = await client.place_order(value, items)
    return Purchase(order, value, token)


async def records(
    network: LocalNetwork, order_number: str, shop: str, agency: str
) -> dict[str, Any]:
    """The four records of an order: shop sales record, agency order and billing status,
    verification's transaction report, approval's transaction record."""
    async with network.admin_channel(network.node(shop).address) as channel:
        sales = await retail_pb2_grpc.RetailAdminServiceStub(channel).GetSalesRecord(
            retail_pb2.GetSalesRecordRequest(order_number=order_number), timeout=10
        )
    async with network.admin_channel(network.node(agency).address) as channel:
        order = await settlement_pb2_grpc.SettlementAdminServiceStub(channel).GetOrder(
            settlement_pb2.GetOrderRequest(order_number=order_number), timeout=10
        )
        billing = await settlement_pb2_grpc.BillingServiceStub(channel).GetBillingStatus(
            settlement_pb2.GetBillingStatusRequest(order_number=order_number), timeout=10
        )
    async with network.admin_channel(network.node("verification").address) as channel:
        report = await verification_pb2_grpc.VerificationServiceStub(channel).GetTransactionReport(
            verification_pb2.GetTransactionReportRequest(order_number=order_number), timeout=10
        )
    async with network.admin_channel(network.node("institution").address) as channel:
        record = await approval_pb2_grpc.TransactionServiceStub(channel).GetTransactionRecord(
            approval_pb2.GetTransactionRecordRequest(order_number=order_number), timeout=10
        )
    return {
        "sales": sales.sales_record,
        "order": order.order,
        "billing": billing.billing_status,
        "report": report.transaction_report,
        "record": record.transaction_record,
    }


def database_url(network: LocalNetwork, entity_id: str) -> str:
    """The node's database URL, as its node.toml gives it."""
    config = network.node(entity_id).directory / "node.toml"
    return str(tomllib.loads(config.read_text())["database_url"])


def table_rows(network: LocalNetwork, entity_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of a node's database, read directly (tests only)."""
    url = database_url(network, entity_id)
    if url.startswith("postgresql://"):
        return _postgresql_rows(url)
    path = network.node(entity_id).directory / "node.db"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        connection.row_factory = sqlite3.Row
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: [dict(row) for row in connection.execute(f'SELECT * FROM "{table}"')]
            for table in tables
        }
    finally:
        connection.close()


def _postgresql_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    import psycopg2  # type: ignore[import-untyped]

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [row[0] for row in cursor.fetchall()]
            found: dict[str, list[dict[str, Any]]] = {}
            for table in tables:
                cursor.execute(f'SELECT * FROM "{table}"')
                names = [column.name for column in cursor.description]
                found[table] = [
                    {
                        name: bytes(value) if isinstance(value, memoryview) else value
                        for name, value in zip(names, row, strict=True)
                    }
                    for row in cursor.fetchall()
                ]
            return found
    finally:
        connection.close()


def rpcs_received(network: LocalNetwork, entity: str, method: str, caller: str) -> list[str]:
    """Timestamps of ``method`` calls from ``caller`` in ``entity``'s audit log."""
    log = network.data_dir / "logs" / f"{entity}.log"
    stamps = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if (
                entry.get("msg") == "rpc"
                and entry.get("method", "").endswith(method)
                and entry.get("caller", "").endswith(f"/{caller}")
            ):
                stamps.append(entry["ts"])
    return stamps


def count(network: LocalNetwork, entity_id: str, table: str) -> int:
    return len(table_rows(network, entity_id)[table])


@contextlib.asynccontextmanager
async def frozen(network: LocalNetwork, entity_id: str) -> AsyncIterator[None]:
    """The node's process is stopped (SIGSTOP) inside the block and continued after it:
    a peer that hangs rather than refuses."""
    pid = network.node(entity_id).process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def request_id() -> str:
    return uuid.uuid4().hex


async def set_status(network: LocalNetwork, entity_id: str, status: int) -> None:
    """The institution's operator sets an entity's registry status."""
    async with network.admin_channel(network.node("institution").address) as channel:
        await approval_pb2_grpc.ApprovalAdminServiceStub(channel).SetEntityStatus(
            approval_pb2.SetEntityStatusRequest(
                request_id=request_id(), entity_id=entity_id, status=status, reason="test"
            ),
            timeout=10,
        )


def start_purchase_network(
    network_factory: Callable[..., LocalNetwork],
    topology: Sequence[NodeSpec] = PURCHASE_TOPOLOGY,
    **options: Any,
) -> LocalNetwork:
    """PURCHASE_TOPOLOGY (or a larger one), once the push and cache shops know every agency.

    ``options`` go to the factory, e.g. ``database="postgresql"``.
    """
    network = network_factory(topology, **options)

    async def ready() -> None:
        for spec in topology:
            if spec.role == "settlement":
                for shop in (VARIANT_SHOPS["push"], VARIANT_SHOPS["cache"]):
                    await wait_for_cached_agency(network, shop, spec.entity_id)

    asyncio.run(ready())
    return network
