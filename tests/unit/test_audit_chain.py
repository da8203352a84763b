"""The audit chain's rules on an in-memory database: appends link, later changes are new
entries that replay over earlier ones, checkpoints are signed with a key kept outside the
database, pages cover every entry and checkpoint once, and the checks find tampering."""

from __future__ import annotations

import json
from pathlib import Path

import peewee
import pytest
from suretynet.approval.v1 import approval_pb2

from nodes.common.audit_chain import (
    CheckpointPublisher,
    checkpoint_to_proto,
    entry_to_proto,
    export_page,
)
from nodes.common.config import NodeConfig
from nodes.operator.audit import ChainExport, check_chain, check_records, replay
from storage.common.audit_chain import GENESIS_HASH, AuditChainTables
from storage.common.database import Store


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Store, AuditChainTables, CheckpointPublisher]:
    database = peewee.SqliteDatabase(":memory:")
    store = Store(database)
    tables = AuditChainTables(database)
    store.transaction(lambda: database.create_tables(tables.tables))
    config = NodeConfig(
        role="approval",
        entity_id="institution",
        database_url=f"sqlite:///{tmp_path / 'node.db'}",
        options={"audit_signing_key": str(tmp_path / "audit.key")},
    )
    return store, tables, CheckpointPublisher(store, tables, config, 60)


def export(tables: AuditChainTables, publisher: CheckpointPublisher, page_size: int) -> ChainExport:
    result = ChainExport("approval", "institution", public_key=publisher.public_key_hex)
    token = ""
    while True:
        request = approval_pb2.ExportAuditChainRequest(page_size=page_size, page_token=token)
        entries, checkpoints, token = export_page(tables, request)
        result.entries += [entry_to_proto(row) for row in entries]
        result.checkpoints += [checkpoint_to_proto(row) for row in checkpoints]
        if not token:
            break
    result.head_sequence, result.head_hash = tables.head_state()
    return result


def test_entries_link_and_later_changes_replay_over_earlier_ones(chain):
    store, tables, publisher = chain
    store.transaction(lambda: tables.append("RECORDED", "t/1", {"amount": 5, "cancelled": ""}))
    store.transaction(lambda: tables.append("RECORDED", "t/2", {"amount": 7, "cancelled": ""}))
    store.transaction(lambda: tables.append("CANCELLED", "t/1", {"cancelled": "yes"}))
    exported = export(tables, publisher, 100)
    assert [e.sequence for e in exported.entries] == [1, 2, 3]
    assert exported.entries[0].previous_hash == GENESIS_HASH
    assert exported.entries[1].previous_hash == exported.entries[0].entry_hash
    assert check_chain(exported) == []
    assert replay(exported.entries)["t/1"] == (3, {"amount": 5, "cancelled": "yes"})
    exported.records = {
        "t/1": {"amount": 5, "cancelled": "yes"},
        "t/2": {"amount": 7, "cancelled": ""},
    }
    assert check_records(exported) == []
    exported.records["t/2"]["amount"] = 8
    [finding] = check_records(exported)
    assert (finding.sequence, finding.subject) == (2, "t/2")
    assert "amount" in finding.problem


def test_checkpoints_are_signed_once_per_head_with_a_key_outside_the_database(chain, tmp_path):
    store, tables, publisher = chain
    assert store.transaction(publisher.checkpoint) is None, "nothing to sign yet"
    for n in range(5):
        store.transaction(lambda n=n: tables.append("RECORDED", f"t/{n}", {"n": n}))
    first = store.transaction(publisher.checkpoint)
    assert first is not None and first.sequence == 5
    assert store.transaction(publisher.checkpoint) is None, "the head did not move"
    store.transaction(lambda: tables.append("RECORDED", "t/9", {"n": 9}))
    assert store.transaction(publisher.checkpoint).sequence == 6
    key_file = tmp_path / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    # Pages of two entries still bring every checkpoint exactly once.
    exported = export(tables, publisher, 2)
    assert [c.sequence for c in exported.checkpoints] == [5, 6]
    assert len(exported.entries) == 6 and check_chain(exported) == []


def test_a_restarted_node_signs_with_the_same_key(chain, tmp_path):
    _, tables, publisher = chain
    config = NodeConfig(
        role="approval",
        entity_id="institution",
        database_url="sqlite:///unused.db",
        options={"audit_signing_key": str(tmp_path / "audit.key")},
    )
    again = CheckpointPublisher(Store(peewee.SqliteDatabase(":memory:")), tables, config, 60)
    assert again.public_key_hex == publisher.public_key_hex


def test_tampering_is_found_at_the_first_bad_entry(chain):
    store, tables, publisher = chain
    for n in range(4):
        store.transaction(lambda n=n: tables.append("RECORDED", f"t/{n}", {"n": n}))
    store.transaction(publisher.checkpoint)
    entries = tables.entries

    edited = export(tables, publisher, 100)
    edited.entries[2].state_json = json.dumps({"n": 99})
    [finding] = check_chain(edited)
    assert finding.sequence == 3 and "edited" in finding.problem

    store.transaction(lambda: entries.delete().where(entries.sequence == 4).execute())
    truncated = export(tables, publisher, 100)
    problems = [f.problem for f in check_chain(truncated)]
    assert any("signed checkpoint covers entry 4" in p for p in problems)
    assert any("chain head says entry 4" in p for p in problems)

    forged = export(tables, publisher, 100)
    forged.checkpoints[0].signature = "00" * 64
    assert any("signature is invalid" in f.problem for f in check_chain(forged))
