"""The tamper-evident record: `suretynet audit verify` on a live network.

Approval's transaction records and verification's reports and cancellation notices are
hash-chained with signed checkpoints (docs/AUDIT.md). These tests make purchases and
cancellations, then edit, delete and reorder rows directly in the nodes' SQLite files and
expect the audit to name the first bad record; after each case the files are restored and
the audit is clean again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import tls
from nodes.common.channels import LICENSE_KEY_METADATA_KEY
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork
from nodes.operator.audit import AuditReport, Finding, verify_network
from storage.common.audit_chain import entry_hash
from tests.e2e.cancel_support import cancel_by_shop
from tests.e2e.purchase_support import buy, table_rows

FAST_CHECKPOINTS = {"audit_checkpoint_interval_s": 0.2}
AUDIT_TOPOLOGY = tuple(
    dataclasses.replace(spec, options={**spec.options, **FAST_CHECKPOINTS})
    if spec.role in ("approval", "verification")
    else spec
    for spec in DEFAULT_TOPOLOGY
    if spec.role != "marketplace"
)


async def heads_checkpointed(network: LocalNetwork) -> bool:
    """Whether both chains' heads are covered by a signed checkpoint."""
    async with network.admin_channel(network.node("institution").address) as channel:
        approval = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ExportAuditChain(
            approval_pb2.ExportAuditChainRequest(page_size=1000), timeout=10
        )
    async with network.admin_channel(network.node("verification").address) as channel:
        verification = await verification_pb2_grpc.VerificationAdminServiceStub(
            channel
        ).ExportAuditChain(verification_pb2.ExportAuditChainRequest(page_size=1000), timeout=10)
    return all(
        page.head_sequence > 0 and any(c.sequence == page.head_sequence for c in page.checkpoints)
        for page in (approval, verification)
    )


VOIDED_ORDER = "ON-audit-void-1"


async def void_at_approval(network: LocalNetwork, order_number: str) -> None:
    """shop-1 voids an order approval never recorded (the purchase saga's compensation)."""
    shop = network.node("shop-1")
    license_key = table_rows(network, "shop-1")["node_credential"][0]["license_key"]
    credentials = tls.client_credentials(
        network.ca.read_bytes(), shop.cert.read_bytes(), shop.key.read_bytes()
    )
    async with grpc.aio.secure_channel(network.node("institution").address, credentials) as channel:
        await approval_pb2_grpc.TransactionServiceStub(channel).RecordTransactionVoid(
            approval_pb2.RecordTransactionVoidRequest(
                request_id=f"void-{order_number}",
                order_number=order_number,
                settlement_agency_id="agency-1",
                reason=types_pb2.ERROR_REASON_PEER_UNAVAILABLE,
            ),
            metadata=[(LICENSE_KEY_METADATA_KEY, license_key)],
            timeout=10,
        )


@pytest.fixture(scope="module")
def audited_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    """Two purchases per shop, one of each cancelled, one void, every chain head
    checkpointed."""
    network = network_factory(AUDIT_TOPOLOGY)

    async def activity() -> None:
        for shop in ("shop-1", "shop-2"):
            kept = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
            cancelled = await buy(network, "agency-1", "alice", shop, [("mug", 1)])
            await cancel_by_shop(network, shop, cancelled.order.order_number)
            assert kept.order.order_number
        await void_at_approval(network, VOIDED_ORDER)
        deadline = time.monotonic() + 30
        while not await heads_checkpointed(network):
            assert time.monotonic() < deadline, "no checkpoint covered the chain heads"
            await asyncio.sleep(0.1)

    asyncio.run(activity())
    return network


def database(network: LocalNetwork, entity: str) -> Path:
    return network.node(entity).directory / "node.db"


@contextmanager
def tampering(path: Path, *tables: str) -> Iterator[sqlite3.Connection]:
    """A connection to a node's live database; ``tables`` are restored afterwards."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    saved = {table: connection.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables}
    try:
        yield connection
    finally:
        for table, rows in saved.items():
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(f'DELETE FROM "{table}"')
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                connection.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
            connection.execute("COMMIT")
        connection.close()


def first_finding(report: AuditReport, node: str) -> Finding:
    found = [finding for finding in report.findings if finding.node == node]
    assert found, f"no finding on {node}: {report.lines()}"
    return found[0]


def entries(connection: sqlite3.Connection) -> list[tuple[int, str, str, str, str, str, str]]:
    return connection.execute(
        "SELECT sequence, kind, subject, state_json, recorded_at, previous_hash, entry_hash "
        "FROM audit_chain_entry ORDER BY sequence"
    ).fetchall()


def test_an_untouched_network_verifies_clean_through_the_cli(audited_network: LocalNetwork):
    """`suretynet audit verify` reads both chains over the admin RPCs and exits 0."""
    manifest = audited_network.data_dir / "network.json"
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "audit", "verify", "--network", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: both chains are intact" in done.stdout
    # Four purchases recorded, two cancelled, one void: seven approval entries; verification
    # holds four reports, two cancel request notices and two cancel process notices.
    assert "approval (institution): 7 entries" in done.stdout
    assert "verification (verification): 8 entries" in done.stdout
    for entity in ("institution", "verification"):
        node = audited_network.node(entity)
        signing_key = node.key.with_name(node.key.stem + ".audit-ed25519.key")
        assert signing_key.stat().st_mode & 0o777 == 0o600, "the signing key is the node's alone"


def test_a_transaction_record_edited_in_its_table_is_reported(audited_network: LocalNetwork):
    network = audited_network
    with tampering(database(network, "institution"), "transaction_record") as connection:
        order = connection.execute(
            "SELECT order_number FROM transaction_record ORDER BY order_number LIMIT 1"
        ).fetchone()[0]
        connection.execute(
            "UPDATE transaction_record SET amount_minor = 1 WHERE order_number = ?", (order,)
        )
        report = verify_network(network.data_dir / "network.json")
        finding = first_finding(report, "approval")
        assert finding.subject == f"transaction_record/{order}"
        assert "edited in its table: amount_minor" in finding.problem
    assert verify_network(network.data_dir / "network.json").ok


def test_an_edited_chain_entry_is_reported_at_that_entry(audited_network: LocalNetwork):
    network = audited_network
    with tampering(database(network, "institution"), "audit_chain_entry") as connection:
        sequence, *_ = entries(connection)[1]
        connection.execute(
            "UPDATE audit_chain_entry SET state_json = replace(state_json, "
            "'\"amount_minor\":', '\"amount_minor\":9') WHERE sequence = ?",
            (sequence,),
        )
        finding = first_finding(verify_network(network.data_dir / "network.json"), "approval")
        assert finding.sequence == sequence
        assert "do not match its hash" in finding.problem
    assert verify_network(network.data_dir / "network.json").ok


def test_a_deleted_chain_entry_is_reported_where_the_gap_is(audited_network: LocalNetwork):
    network = audited_network
    with tampering(database(network, "verification"), "audit_chain_entry") as connection:
        connection.execute("DELETE FROM audit_chain_entry WHERE sequence = 3")
        finding = first_finding(verify_network(network.data_dir / "network.json"), "verification")
        assert finding.sequence == 4
        assert "expected entry 3 here" in finding.problem
    assert verify_network(network.data_dir / "network.json").ok


def test_reordered_chain_entries_are_reported_at_the_first_moved_one(
    audited_network: LocalNetwork,
):
    network = audited_network
    with tampering(database(network, "institution"), "audit_chain_entry") as connection:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE audit_chain_entry SET sequence = -1 WHERE sequence = 2")
        connection.execute("UPDATE audit_chain_entry SET sequence = 2 WHERE sequence = 3")
        connection.execute("UPDATE audit_chain_entry SET sequence = 3 WHERE sequence = -1")
        connection.execute("COMMIT")
        finding = first_finding(verify_network(network.data_dir / "network.json"), "approval")
        assert finding.sequence == 2
        assert "does not link to the entry before it" in finding.problem
    assert verify_network(network.data_dir / "network.json").ok


def test_a_deleted_cancellation_notice_and_a_truncated_chain_are_reported(
    audited_network: LocalNetwork,
):
    """Deleting the newest entries with their rows, and the head to match, leaves a chain
    that links; the signed checkpoint still names the deleted entries, and approval's
    cancellation no longer matches anything at verification."""
    network = audited_network
    tables = ("audit_chain_entry", "audit_chain_head", "cancel_process_notice")
    with tampering(database(network, "verification"), *tables) as connection:
        rows = entries(connection)
        last = rows[-1]
        assert last[2].startswith("cancel_process_notice/")
        kept = rows[-2]
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("DELETE FROM audit_chain_entry WHERE sequence = ?", (last[0],))
        connection.execute(
            "DELETE FROM cancel_process_notice WHERE cancel_request_id = ?",
            (last[2].split("/", 1)[1],),
        )
        connection.execute(
            "UPDATE audit_chain_head SET sequence = ?, entry_hash = ?", (kept[0], kept[6])
        )
        connection.execute("COMMIT")
        report = verify_network(network.data_dir / "network.json")
        finding = first_finding(report, "verification")
        assert finding.sequence == last[0]
        assert "entries were deleted" in finding.problem
        assert any(
            f.node == "approval" and "cancellation is not the cancel process notice" in f.problem
            for f in report.findings
        )
    assert verify_network(network.data_dir / "network.json").ok


def test_a_rehashed_chain_fails_its_signed_checkpoint_and_the_cross_check(
    audited_network: LocalNetwork,
):
    """Someone who knows the hash rewrites approval's first record and re-hashes every
    later entry and the head: the links hold, but the signatures were made over the old
    hashes, and verification's report still says the old amount."""
    network = audited_network
    tables = ("audit_chain_entry", "audit_chain_head", "transaction_record")
    with tampering(database(network, "institution"), *tables) as connection:
        rows = entries(connection)
        order = rows[0][2].split("/", 1)[1]
        connection.execute("BEGIN IMMEDIATE")
        previous = rows[0][5]
        for index, (sequence, kind, subject, state, recorded_at, _, _) in enumerate(rows):
            if index == 0:
                state = state.replace('"amount_minor":', '"amount_minor":1', 1)
            hashed = entry_hash(sequence, kind, subject, state, recorded_at, previous)
            connection.execute(
                "UPDATE audit_chain_entry SET state_json = ?, previous_hash = ?, entry_hash = ? "
                "WHERE sequence = ?",
                (state, previous, hashed, sequence),
            )
            previous = hashed
        connection.execute("UPDATE audit_chain_head SET entry_hash = ?", (previous,))
        connection.execute(
            "UPDATE transaction_record SET amount_minor = CAST('1' || amount_minor AS INTEGER) "
            "WHERE order_number = ?",
            (order,),
        )
        connection.execute("COMMIT")
        report = verify_network(network.data_dir / "network.json")
        finding = first_finding(report, "approval")
        assert "differs from the signed checkpoint" in finding.problem
        assert any(
            f.subject == f"transaction_record/{order}" and "amount_minor" in f.problem
            for f in report.findings
        )
    assert verify_network(network.data_dir / "network.json").ok


def test_a_void_is_chained_and_its_deletion_reported(audited_network: LocalNetwork):
    """A void is a later state change: appended as ORDER_VOIDED, never edited into an
    earlier entry; deleting the void row from its table is reported."""
    network = audited_network
    with tampering(database(network, "institution"), "order_void") as connection:
        [voided] = [row for row in entries(connection) if row[1] == "ORDER_VOIDED"]
        assert voided[2] == f"order_void/{VOIDED_ORDER}"
        connection.execute("DELETE FROM order_void WHERE order_number = ?", (VOIDED_ORDER,))
        finding = first_finding(verify_network(network.data_dir / "network.json"), "approval")
        assert (finding.sequence, finding.subject) == (voided[0], f"order_void/{VOIDED_ORDER}")
        assert "deleted from its table" in finding.problem
    assert verify_network(network.data_dir / "network.json").ok


def test_a_malformed_network_descriptor_is_one_line_and_status_2(tmp_path: Path):
    descriptor = tmp_path / "network.json"
    descriptor.write_text("{}")
    done = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "audit", "verify", "--network", str(descriptor)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"suretynet: {descriptor}: 'ca' (the network CA's PEM file) is missing"
    )
