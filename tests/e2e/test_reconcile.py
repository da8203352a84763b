"""`suretynet reconcile` and the ExportFlowRecords RPCs it reads, on a real local network.

A network runs purchases, both cancellation procedures, a billing run and both mediation
settlement modes; it must reconcile clean. Then each invariant is shown to fire by
tampering one node's SQLite database directly (the way a bug or a bad hand edit would), and
to clear again once the row is put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import flow_export as fx
from nodes.common.status import decode_rpc_error
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo import FlowContext
from nodes.network.demo_data import members_of
from nodes.network.flows import cancellation, mediation, purchase
from nodes.network.local import LocalNetwork, restart_node, stop_node
from nodes.operator import network as network_file
from nodes.operator import trace
from nodes.operator.reconcile import Report, reconcile

ROLE_ORDER = types_pb2.FLOW_RECORD_KIND_ORDER
# 0.2 s apart: the shop's resumer voids a refused order within its first rounds.
VOID_WAIT_ROUNDS = 300


@pytest.fixture(scope="module")
def busy_network(network: LocalNetwork) -> LocalNetwork:
    """The `up` network after purchases, cancellations, a billing run, mediations, refusals
    and a voided order."""

    async def run_flows() -> None:
        for number, flow in enumerate(
            (
                purchase.directory_purchase,
                purchase.push_purchase,
                purchase.credit_limit_refusal,
                cancellation.member_cancels_before_billing,
                cancellation.shop_cancels_after_billing,
                mediation.local_purchase,
                mediation.mediated_claim_6,
                mediation.mediated_claim_7,
                mediation.credit_refusal,
            )
        ):
            await flow(FlowContext(network, trace_id=f"reconcile-flow-{number}"))

    asyncio.run(run_flows())
    asyncio.run(_purchase_by_a_suspended_shop(network))
    return network


async def _purchase_by_a_suspended_shop(network: LocalNetwork) -> None:
    """shop-2 is suspended while its billing search is out: the agency refuses, the shop
    voids the order at approval and the agency (issue 9's saga); waits until it is VOIDED."""
    member = members_of("agency-2")[0]
    ca = network.ca.read_bytes()
    async with AgencyClient(network.node("agency-2").member_address, ca) as client:
        await client.login(member.member_id, member.password)
        value = (await client.anonymous_user_id("shop-2")).anonymous_user_id.value
    await _set_status(network, "shop-2", types_pb2.ENTITY_STATUS_SUSPENDED)
    try:
        async with ShopClient(network.node("shop-2").member_address, ca) as shop:
            with pytest.raises(grpc.RpcError):
                await shop.place_order(value, [("mug", 1)])
    finally:
        await _set_status(network, "shop-2", types_pb2.ENTITY_STATUS_ACTIVE)
    manifest = network_file.load(network.data_dir / "network.json")
    shop_2 = next(node for node in manifest.nodes if node.entity_id == "shop-2")
    for _ in range(VOID_WAIT_ROUNDS):
        orders = (await network_file.export_node(manifest, shop_2, kind=ROLE_ORDER)).records
        if orders and all(order.state not in fx.INTERMEDIATE_STATES for order in orders):
            assert "VOIDED" in {order.stored_state for order in orders}, orders
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"shop-2's refused order never ended: {orders}")


async def _set_status(network: LocalNetwork, entity_id: str, status: int) -> None:
    async with network.admin_channel(network.node("institution").address) as channel:
        await approval_pb2_grpc.ApprovalAdminServiceStub(channel).SetEntityStatus(
            approval_pb2.SetEntityStatusRequest(
                request_id=f"reconcile-status-{entity_id}-{status}",
                entity_id=entity_id,
                status=status,
                reason="reconcile test",
            ),
            timeout=10,
        )


def _reconcile(network: LocalNetwork) -> Report:
    return asyncio.run(reconcile(network_file.load(network.data_dir / "network.json")))


def _records(network: LocalNetwork) -> list[types_pb2.FlowRecord]:
    exports = asyncio.run(
        network_file.export_all(network_file.load(network.data_dir / "network.json"))
    )
    assert all(not export.error for export in exports), [e.error for e in exports]
    return [record for export in exports for record in export.records]


def _pick(
    network: LocalNetwork, entity_id: str, kind: int, state: str = "", **attributes: str
) -> types_pb2.FlowRecord:
    for record in _records(network):
        if (
            record.entity_id == entity_id
            and record.kind == kind
            and (not state or record.state == state)
            and all(record.attributes.get(key) == value for key, value in attributes.items())
        ):
            return record
    raise AssertionError(f"no {state} record of kind {kind} at {entity_id}")


@contextlib.contextmanager
def _tampered(
    network: LocalNetwork, entity_id: str, change: str, undo: str, parameters: tuple = ()
) -> Iterator[None]:
    """Runs ``change`` on the node's own SQLite file, and ``undo`` afterwards, whatever happens."""
    database = network.node(entity_id).directory / "node.db"
    with sqlite3.connect(database, timeout=30) as connection:
        assert connection.execute(change, parameters).rowcount >= 1, change
    try:
        yield
    finally:
        with sqlite3.connect(database, timeout=30) as connection:
            connection.execute(undo, parameters)


def _fired(report: Report, invariant: str, node: str, order: str = "", member: str = "") -> None:
    found = [
        mismatch
        for mismatch in report.mismatches
        if mismatch.invariant == invariant
        and node in mismatch.node
        and (not order or order in mismatch.order)
        and (not member or mismatch.member == member)
    ]
    assert found, f"{invariant} at {node} for {order or member} not in {report.mismatches}"


def test_clean_network_reconciles_clean_from_the_cli(busy_network: LocalNetwork) -> None:
    """Exit 0 and no mismatch after purchases, cancellations, billing and mediations."""
    manifest = busy_network.data_dir / "network.json"
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "reconcile", "--network", str(manifest), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["mismatches"] == []
    # Two purchases and two cancelled orders at least, every member of both agencies.
    assert result["orders_checked"] >= 4
    assert result["members_checked"] >= 2
    assert result["mediations_checked"] >= 2
    assert len(result["nodes_read"]) == len(busy_network.nodes)
    table = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "reconcile", "--network", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0 and "consistent" in table.stdout, table.stdout


def test_export_pages_across_kinds_and_filters(busy_network: LocalNetwork) -> None:
    """Page size 1 yields exactly the records one big page does; kind and order filter."""
    node = busy_network.node("agency-1")

    async def pages(size: int, **fields: object) -> list[types_pb2.FlowRecord]:
        records: list[types_pb2.FlowRecord] = []
        token = ""
        async with busy_network.admin_channel(node.address) as channel:
            stub = settlement_pb2_grpc.SettlementAdminServiceStub(channel)
            for _ in range(1000):
                response = await stub.ExportFlowRecords(
                    settlement_pb2.ExportFlowRecordsRequest(
                        page_size=size, page_token=token, **fields
                    ),
                    timeout=10,
                )
                records.extend(response.flow_records)
                token = response.next_page_token
                if not token:
                    return records
        raise AssertionError("pages never ended")

    whole = asyncio.run(pages(500))
    one_by_one = asyncio.run(pages(1))
    assert [(r.kind, r.key) for r in one_by_one] == [(r.kind, r.key) for r in whole]
    kinds = {record.kind for record in whole}
    assert {
        ROLE_ORDER,
        types_pb2.FLOW_RECORD_KIND_CANCELLATION,
        types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT,
    } <= kinds
    credits = asyncio.run(pages(2, kind=types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT))
    assert credits and {record.kind for record in credits} == {
        types_pb2.FLOW_RECORD_KIND_MEMBER_CREDIT
    }
    order = next(record for record in whole if record.kind == ROLE_ORDER)
    only = asyncio.run(pages(50, order_number=order.order_number))
    assert only and {record.order_number for record in only} == {order.order_number}


def test_export_refuses_bad_input_and_non_operators(busy_network: LocalNetwork) -> None:
    """Bad token, unknown kind, oversized order number: INVALID_ARGUMENT with a reason and the
    field at fault; another node's certificate is refused."""
    node = busy_network.node("shop-1")

    async def call(request: retail_pb2.ExportFlowRecordsRequest, channel: grpc.aio.Channel) -> str:
        from suretynet.retail.v1 import retail_pb2_grpc

        try:
            await retail_pb2_grpc.RetailAdminServiceStub(channel).ExportFlowRecords(
                request, timeout=10
            )
        except grpc.RpcError as error:
            remote = decode_rpc_error(error)
            fields = ",".join(violation.field for violation in remote.violations)
            return f"{remote.code.name} {remote.reason} {fields}".rstrip()
        return "OK"

    async def run() -> list[str]:
        async with busy_network.admin_channel(node.address) as channel:
            bad_token = await call(retail_pb2.ExportFlowRecordsRequest(page_token="xyz"), channel)
            bad_kind = await call(retail_pb2.ExportFlowRecordsRequest(kind=99), channel)
            too_long = await call(
                retail_pb2.ExportFlowRecordsRequest(order_number="x" * 129), channel
            )
        agency = busy_network.node("agency-1")
        from nodes.common import tls

        credentials = tls.client_credentials(
            busy_network.ca.read_bytes(), agency.cert.read_bytes(), agency.key.read_bytes()
        )
        async with grpc.aio.secure_channel(node.address, credentials) as channel:
            as_agency = await call(retail_pb2.ExportFlowRecordsRequest(), channel)
        return [bad_token, bad_kind, too_long, as_agency]

    assert asyncio.run(run()) == [
        "INVALID_ARGUMENT PAGE_TOKEN_INVALID page_token",
        "INVALID_ARGUMENT FIELD_INVALID kind",
        "INVALID_ARGUMENT FIELD_INVALID order_number",
        "PERMISSION_DENIED ROLE_NOT_ALLOWED",
    ]


def test_amount_changed_at_verification_fires(busy_network: LocalNetwork) -> None:
    """A report whose amount differs from the shop's order: RECORDS_DISAGREE at verification."""
    order = _pick(busy_network, "shop-1", ROLE_ORDER, "COMPLETED").order_number
    with _tampered(
        busy_network,
        "verification",
        "UPDATE transaction_report SET amount_minor = amount_minor + 1 WHERE order_number = ?",
        "UPDATE transaction_report SET amount_minor = amount_minor - 1 WHERE order_number = ?",
        (order,),
    ):
        _fired(_reconcile(busy_network), "RECORDS_DISAGREE", "verification", order)
    assert _reconcile(busy_network).mismatches == []


def test_state_changed_at_approval_fires(busy_network: LocalNetwork) -> None:
    """A completed order that approval marks cancelled: RECORDS_DISAGREE at approval."""
    order = _pick(busy_network, "shop-2", ROLE_ORDER, "COMPLETED").order_number
    with _tampered(
        busy_network,
        "institution",
        "UPDATE transaction_record SET cancelled_at = recorded_at WHERE order_number = ?",
        "UPDATE transaction_record SET cancelled_at = NULL WHERE order_number = ?",
        (order,),
    ):
        _fired(_reconcile(busy_network), "RECORDS_DISAGREE", "institution", order)
    assert _reconcile(busy_network).mismatches == []


def test_order_unknown_to_its_shop_fires(busy_network: LocalNetwork) -> None:
    """The shop loses an order the agency billed: ORPHAN_ORDER at the agency."""
    order = _pick(busy_network, "shop-1", ROLE_ORDER, "COMPLETED").order_number
    with _renamed(busy_network, order):
        report = _reconcile(busy_network)
        _fired(report, "ORPHAN_ORDER", "agency-1", order)
        _fired(report, "ORPHAN_ORDER", "verification", order)
    assert _reconcile(busy_network).mismatches == []


@contextlib.contextmanager
def _renamed(network: LocalNetwork, order: str) -> Iterator[None]:
    """Renames the shop's order (as if it were lost) and back."""
    database = network.node("shop-1").directory / "node.db"
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(
            "UPDATE shop_order SET order_number = ? WHERE order_number = ?",
            (order + "-lost", order),
        )
    try:
        yield
    finally:
        with sqlite3.connect(database, timeout=30) as connection:
            connection.execute(
                "UPDATE shop_order SET order_number = ? WHERE order_number = ?",
                (order, order + "-lost"),
            )


def test_one_order_at_two_agencies_fires(busy_network: LocalNetwork) -> None:
    """The same order number held (and billable) at two agencies: BILLED_TWICE."""
    order = _pick(busy_network, "agency-1", ROLE_ORDER, "COMPLETED").order_number
    source = busy_network.node("agency-1").directory / "node.db"
    with sqlite3.connect(source) as connection:
        connection.row_factory = sqlite3.Row
        row = dict(
            connection.execute(
                "SELECT * FROM settlement_order WHERE order_number = ?", (order,)
            ).fetchone()
        )
    with _inserted(busy_network, "agency-2", row):
        _fired(_reconcile(busy_network), "BILLED_TWICE", "agency-1,agency-2", order)
    assert _reconcile(busy_network).mismatches == []


@contextlib.contextmanager
def _inserted(network: LocalNetwork, entity_id: str, row: dict[str, object]) -> Iterator[None]:
    """Copies an agency order into another agency's database, and deletes the copy after."""
    database = network.node(entity_id).directory / "node.db"
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with sqlite3.connect(database, timeout=30) as connection:
        connection.execute(
            f"INSERT INTO settlement_order ({columns}) VALUES ({marks})", tuple(row.values())
        )
    try:
        yield
    finally:
        with sqlite3.connect(database, timeout=30) as connection:
            connection.execute(
                "DELETE FROM settlement_order WHERE order_number = ?", (row["order_number"],)
            )


def test_credit_in_use_not_matching_open_orders_fires(busy_network: LocalNetwork) -> None:
    """The agency's running credit in use drifting from its open orders: MEMBER_CREDIT."""
    order = _pick(busy_network, "agency-1", ROLE_ORDER, "COMPLETED")
    with _tampered(
        busy_network,
        "agency-1",
        "UPDATE member SET credit_used_minor = credit_used_minor - 1 WHERE member_id = ?",
        "UPDATE member SET credit_used_minor = credit_used_minor + 1 WHERE member_id = ?",
        (order.member_id,),
    ):
        _fired(_reconcile(busy_network), "MEMBER_CREDIT", "agency-1", member=order.member_id)
    assert _reconcile(busy_network).mismatches == []


def test_credit_back_over_the_charge_fires(busy_network: LocalNetwork) -> None:
    """A cancellation crediting back twice the order: CREDIT_BACK_EXCEEDS_CHARGE."""
    cancelled = _pick(busy_network, "agency-2", types_pb2.FLOW_RECORD_KIND_CANCELLATION)
    with _tampered(
        busy_network,
        "agency-2",
        "UPDATE cancellation SET amount_minor = amount_minor * 2 WHERE order_number = ?",
        "UPDATE cancellation SET amount_minor = amount_minor / 2 WHERE order_number = ?",
        (cancelled.order_number,),
    ):
        _fired(
            _reconcile(busy_network),
            "CREDIT_BACK_EXCEEDS_CHARGE",
            "agency-2",
            cancelled.order_number,
        )
    assert _reconcile(busy_network).mismatches == []


def test_invoice_not_matching_the_charge_fires(busy_network: LocalNetwork) -> None:
    """A mediation charge invoice off by 100: MARKETPLACE_BOOKS at its issuer."""
    invoice = _pick(
        busy_network,
        "market-1",
        types_pb2.FLOW_RECORD_KIND_INVOICE,
        invoice_kind="MEDIATION_CHARGE",
    )
    with _tampered(
        busy_network,
        "market-1",
        "UPDATE invoice SET amount_minor = amount_minor + 100 WHERE invoice_id = ?",
        "UPDATE invoice SET amount_minor = amount_minor - 100 WHERE invoice_id = ?",
        (invoice.key,),
    ):
        _fired(_reconcile(busy_network), "MARKETPLACE_BOOKS", "market-1")
    assert _reconcile(busy_network).mismatches == []


def test_supplier_and_requester_disagreeing_fires(busy_network: LocalNetwork) -> None:
    """The supplier thinks a settled mediation was cancelled: MEDIATION_DISAGREES."""
    supplied = _pick(
        busy_network,
        "market-2",
        types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION,
        side="supplier",
    )
    with _tampered(
        busy_network,
        "market-2",
        "UPDATE supplied_transaction SET state = 'CANCELLED' WHERE mediated_transaction_id = ?",
        f"UPDATE supplied_transaction SET state = '{supplied.stored_state}' "
        "WHERE mediated_transaction_id = ?",
        (supplied.key,),
    ):
        _fired(_reconcile(busy_network), "MEDIATION_DISAGREES", "market-1", supplied.key)
    assert _reconcile(busy_network).mismatches == []


def test_intermediate_state_past_its_lifetime_fires(busy_network: LocalNetwork) -> None:
    """An agency order left unreported since 2000: STALE_STATE (and nothing else breaks)."""
    order = _pick(busy_network, "agency-2", ROLE_ORDER, "COMPLETED")
    database = busy_network.node("agency-2").directory / "node.db"
    with sqlite3.connect(database) as connection:
        reported_at, created_at = connection.execute(
            "SELECT reported_at, created_at FROM settlement_order WHERE order_number = ?",
            (order.order_number,),
        ).fetchone()
    with _tampered(
        busy_network,
        "agency-2",
        "UPDATE settlement_order SET reported_at = NULL, created_at = '2000-01-01 00:00:00' "
        "WHERE order_number = ?",
        f"UPDATE settlement_order SET reported_at = '{reported_at}', created_at = '{created_at}' "
        "WHERE order_number = ?",
        (order.order_number,),
    ):
        _fired(_reconcile(busy_network), "STALE_STATE", "agency-2", order.order_number)
    assert _reconcile(busy_network).mismatches == []


def test_unreadable_network_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing network.json: exit 2 and the file named, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "reconcile", "--network", str(tmp_path / "no.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no.json: no such file" in done.stderr and "Traceback" not in done.stderr


def test_a_voided_order_is_traced_to_every_void(busy_network: LocalNetwork) -> None:
    """A voided purchase (over the credit limit, or by the suspended shop): trace shows the
    refusal, the voids sent, and each node's VOIDED record."""
    voided = _pick(busy_network, "shop-2", ROLE_ORDER, "VOIDED")
    order, agency = voided.order_number, voided.attributes["settlement_agency_id"]
    journey = asyncio.run(
        trace.trace(network_file.load(busy_network.data_dir / "network.json"), order)
    )
    hops = {(step.sender, step.receiver, step.label) for step in journey.steps}
    assert ("shop-2", "institution", "TransactionService/RecordTransactionVoid") in hops
    assert ("shop-2", agency, "BillingService/VoidOrder") in hops
    reason = voided.attributes["decline_reason"]
    assert reason and any(step.refusal_reason == reason for step in journey.steps)
    finals = {(final.node, final.state) for final in journey.finals}
    assert {("shop-2", "VOIDED"), (agency, "VOIDED"), ("institution", "VOIDED")} <= finals


def test_a_node_that_cannot_be_read_is_a_finding(busy_network: LocalNetwork) -> None:
    """A stopped node: NODE_UNREADABLE (nothing it holds was checked), exit 1; back once the
    node is restarted on its addresses."""
    stop_node(busy_network.node("market-2"))
    try:
        report = _reconcile(busy_network)
        _fired(report, "NODE_UNREADABLE", "market-2")
        assert "market-2" not in report.nodes_read
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "nodes.cli",
                "reconcile",
                "--network",
                str(busy_network.data_dir / "network.json"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1 and "NODE_UNREADABLE" in done.stdout, done.stdout
    finally:
        asyncio.run(restart_node(busy_network, "market-2"))
    assert _reconcile(busy_network).mismatches == []
