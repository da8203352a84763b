"""The audit chain's storage: its tables bound to a node's database, and the append.

What the chain is for and how it is checked: nodes/common/audit_chain.py and docs/AUDIT.md.
The hash is defined here because it covers exactly the stored columns.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import peewee

from storage.common import statements
from storage.common.database import bind
from storage.common.models import AuditChainEntryRow, AuditChainHeadRow, AuditCheckpointRow

GENESIS_HASH = "0" * 64
HEAD = "head"
# The head row, made on the first append.
_START: statements.Statement[AuditChainHeadRow] = statements.Statement(
    lambda t, p: t.insert(
        name=p.of(t.name), sequence=0, entry_hash=p.of(t.entry_hash)
    ).on_conflict_ignore()
)
# The next sequence number is taken by an UPDATE, so that concurrent appends (PostgreSQL
# replicas) wait for each other on the head row instead of reading the same sequence.
_ADVANCE: statements.Statement[AuditChainHeadRow] = statements.Statement(
    lambda t, p: t.update(sequence=t.sequence + 1).where(t.name == p.name)
)
_SET_HASH: statements.Statement[AuditChainHeadRow] = statements.Statement(
    lambda t, p: t.update(entry_hash=p.of(t.entry_hash)).where(t.name == p.name)
)


def canonical_json(state: Mapping[str, Any]) -> str:
    """The one JSON text of ``state``: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(dict(state), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    sequence: int, kind: str, subject: str, state_json: str, recorded_at: str, previous_hash: str
) -> str:
    """SHA-256 (hex) of the JSON array of the entry's fields, as docs/AUDIT.md gives it."""
    material = json.dumps(
        [sequence, kind, subject, state_json, recorded_at, previous_hash],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()


class AuditChainTables:
    """The chain's three tables bound to one node's database."""

    def __init__(self, database: peewee.Database) -> None:
        self.entries = bind(database, AuditChainEntryRow)
        self.head = bind(database, AuditChainHeadRow)
        self.checkpoints = bind(database, AuditCheckpointRow)
        self.tables: tuple[type[peewee.Model], ...] = (self.entries, self.head, self.checkpoints)

    def append(self, kind: str, subject: str, state: Mapping[str, Any]) -> AuditChainEntryRow:
        """Appends one entry; must run inside the transaction that makes the change."""
        head = self.head
        if not head._meta.database.rows_affected(_ADVANCE.execute(head, name=HEAD)):
            # The chain's first entry: its head row is made once, then advanced.
            _START.execute(head, name=HEAD, entry_hash=GENESIS_HASH)
            _ADVANCE.execute(head, name=HEAD)
        current = statements.find(head, name=HEAD)
        assert current is not None, "the head row was made above"
        sequence, previous = int(current.sequence), str(current.entry_hash)
        state_json = canonical_json(state)
        recorded_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        hashed = entry_hash(sequence, kind, subject, state_json, recorded_at, previous)
        row: AuditChainEntryRow = self.entries.create(
            sequence=sequence,
            kind=kind,
            subject=subject,
            state_json=state_json,
            recorded_at=recorded_at,
            previous_hash=previous,
            entry_hash=hashed,
        )
        _SET_HASH.execute(head, name=HEAD, entry_hash=hashed)
        return row

    def head_state(self) -> tuple[int, str]:
        row = statements.find(self.head, name=HEAD)
        return (int(row.sequence), str(row.entry_hash)) if row else (0, GENESIS_HASH)
