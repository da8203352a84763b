"""The audit chain: a tamper-evident, append-only log of a node's audited records.

Approval's transaction record database (claim 1.13) and verification's reports and
cancellation notices are the institution's evidence. Anyone with write access to a
database file could edit, delete or reorder rows; the chain makes each of those visible
to an auditor who trusts neither the database nor its operator:

- every change to an audited record appends one entry *in the same transaction*: its
  sequence (1, 2, ... without gaps), kind, subject (``table/key``), the fields it sets as
  canonical JSON, when, the previous entry's hash and its own hash. A later change to a
  record (a cancellation, a void) is a new entry; a chained entry is never edited;
- the head row holds the last sequence and hash; appends update it first, which orders
  concurrent appends (the row lock on PostgreSQL, the single writer on SQLite);
- every ``audit_checkpoint_interval_s`` the node signs a checkpoint (its entity ID, the
  head's sequence and hash, the time) with an Ed25519 key kept in a file outside its
  database, stores it and logs it, so a copy lives outside the database too;
- ``suretynet audit verify`` (nodes/operator/audit.py) re-hashes the chain, checks the
  links, the checkpoints' signatures and hashes, replays each subject and compares the
  result with the tables, and cross-checks approval against verification.

Entries after the last checkpoint can be truncated from the end without a trace in the
chain itself (with the audited rows); the interval bounds that window, and the
cross-check against the other node's chain narrows it further.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from suretynet.type.v1 import types_pb2

from nodes.common import logs, voids
from nodes.common.config import NodeConfig
from nodes.common.convert import decode_page_token, encode_page_token, page_size
from nodes.common.errors import DomainError, ErrorKind, FieldViolation
from nodes.common.paging import by_key
from storage.common import statements
from storage.common.audit_chain import AuditChainTables, canonical_json
from storage.common.database import Store
from storage.common.models import AuditChainEntryRow, AuditCheckpointRow, OrderVoid

log = logging.getLogger(__name__)

CHECKPOINT_DOMAIN = "suretynet-audit-checkpoint/v1"
SIGNING_KEY_SUFFIX = ".audit-ed25519.key"
DEFAULT_CHECKPOINT_INTERVAL_S = 60.0


def checkpoint_message(entity_id: str, sequence: int, head_hash: str, signed_at: str) -> bytes:
    """The bytes a checkpoint signature covers."""
    return json.dumps(
        [CHECKPOINT_DOMAIN, entity_id, sequence, head_hash, signed_at], separators=(",", ":")
    ).encode()


def iso(moment: datetime.datetime | None) -> str:
    """A stored timestamp in the fixed text form audited states use ("" for none)."""
    return moment.isoformat() if moment is not None else ""


def digest(blob: bytes | memoryview | None) -> str:
    """SHA-256 (hex) of a stored blob, so that audited states cover serialized messages."""
    return hashlib.sha256(bytes(blob)).hexdigest() if blob is not None else ""


def export_page(tables: AuditChainTables, request: Any) -> tuple[list[Any], list[Any], str]:
    """One page of entries and the checkpoints that go with it (see ExportAuditChainResponse)."""
    after = _page_position(request.page_token)
    entries, token = by_key(tables.entries.select(), tables.entries.sequence, request)
    checkpoints = tables.checkpoints.select().where(tables.checkpoints.sequence > after)
    if token:
        checkpoints = checkpoints.where(tables.checkpoints.sequence <= entries[-1].sequence)
    return entries, list(checkpoints.order_by(tables.checkpoints.sequence)), token


def _page_position(token: str) -> int:
    raw = decode_page_token(token)
    try:
        return int(raw or 0)
    except ValueError:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
            "page_token: not a token this node issued",
            violations=[FieldViolation("page_token", "not a token this node issued")],
        ) from None


def entry_to_proto(row: AuditChainEntryRow) -> types_pb2.AuditChainEntry:
    return types_pb2.AuditChainEntry(
        sequence=int(row.sequence),
        kind=row.kind,
        subject=row.subject,
        state_json=row.state_json,
        recorded_at=row.recorded_at,
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
    )


def checkpoint_to_proto(row: AuditCheckpointRow) -> types_pb2.AuditCheckpoint:
    return types_pb2.AuditCheckpoint(
        sequence=int(row.sequence),
        entry_hash=row.entry_hash,
        signed_at=row.signed_at,
        signature=row.signature,
    )


@dataclass(frozen=True)
class AuditedTable:
    """One audited table: its rows' subject prefix, key column and audited state."""

    name: str
    model: type[peewee.Model]
    key: peewee.Field
    state: Callable[[Any], Mapping[str, Any]]


def list_audited(
    tables: Sequence[AuditedTable], request: Any
) -> tuple[list[types_pb2.AuditedRecord], str]:
    """One page of the current state of every audited row, table after table."""
    size = page_size(request.page_size)
    position = decode_page_token(request.page_token)
    index_text, _, last_key = position.partition("|")
    try:
        index = int(index_text or 0)
    except ValueError:
        index = len(tables)
    if not 0 <= index < len(tables) and position:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
            "page_token: not a token this node issued",
            violations=[FieldViolation("page_token", "not a token this node issued")],
        )
    records: list[types_pb2.AuditedRecord] = []
    while index < len(tables) and len(records) < size:
        table = tables[index]
        query = table.model.select()
        if last_key:
            query = query.where(table.key > last_key)
        rows = list(query.order_by(table.key).limit(size - len(records) + 1))
        more = len(rows) > size - len(records)
        for row in rows[: size - len(records)]:
            records.append(
                types_pb2.AuditedRecord(
                    subject=f"{table.name}/{getattr(row, table.key.name)}",
                    state_json=canonical_json(table.state(row)),
                )
            )
            last_key = str(getattr(row, table.key.name))
        if not more:
            index, last_key = index + 1, ""
    if index >= len(tables):
        return records, ""
    return records, encode_page_token(f"{index}|{last_key}")


def signing_key_path(config: NodeConfig) -> Path:
    """Where the node keeps its audit signing key: ``options.audit_signing_key``, else next
    to its TLS key, else next to its SQLite file. Never inside the database."""
    explicit = config.options.get("audit_signing_key")
    if explicit:
        return Path(str(explicit))
    if config.tls is not None:
        return config.tls.key.with_name(config.tls.key.stem + SIGNING_KEY_SUFFIX)
    if config.database_url.startswith("sqlite:///"):
        return Path(config.database_url.removeprefix("sqlite:///")).with_name(
            "node" + SIGNING_KEY_SUFFIX
        )
    raise ValueError("options.audit_signing_key: required without TLS and SQLite")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The node's Ed25519 audit signing key; made on first start, readable by the node only."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return loaded


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


class CheckpointPublisher:
    """Signs and stores a checkpoint of the chain's head at intervals (when it moved)."""

    def __init__(
        self, store: Store, tables: AuditChainTables, config: NodeConfig, interval_s: float
    ) -> None:
        if interval_s <= 0:
            raise ValueError("options.audit_checkpoint_interval_s: must be positive")
        self._store = store
        self._tables = tables
        self._entity_id = config.entity_id
        self._key = load_signing_key(signing_key_path(config))
        self.public_key_hex = public_key_hex(self._key)
        self.interval_s = interval_s

    def checkpoint(self) -> AuditCheckpointRow | None:
        """Signs the current head unless it is already checkpointed; inside a transaction."""
        sequence, head_hash = self._tables.head_state()
        checkpoints = self._tables.checkpoints
        if sequence == 0 or statements.find(checkpoints, sequence=sequence):
            return None
        signed_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
        signature = self._key.sign(
            checkpoint_message(self._entity_id, sequence, head_hash, signed_at)
        )
        row: AuditCheckpointRow = checkpoints.create(
            sequence=sequence, entry_hash=head_hash, signed_at=signed_at, signature=signature.hex()
        )
        return row

    async def publish(self) -> None:
        row = await self._store.run(self.checkpoint)
        if row is not None:
            logs.event(
                log,
                "audit checkpoint",
                sequence=int(row.sequence),
                entry_hash=row.entry_hash,
                signed_at=row.signed_at,
                signature=row.signature,
                public_key=self.public_key_hex,
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            logs.trace_id_var.set("audit-checkpoint")
            try:
                await self.publish()
            except Exception:
                log.exception("audit checkpoint failed")


async def serve_export(
    store: Store,
    tables: AuditChainTables,
    publisher: CheckpointPublisher,
    request: Any,
    response_type: type[Any],
) -> Any:
    """ExportAuditChain for any role: one page, its checkpoints, the key and the head."""

    def query() -> Any:
        entries, checkpoints, token = export_page(tables, request)
        sequence, head_hash = tables.head_state()
        return response_type(
            entries=[entry_to_proto(row) for row in entries],
            checkpoints=[checkpoint_to_proto(row) for row in checkpoints],
            signing_public_key=publisher.public_key_hex,
            head_sequence=sequence,
            head_hash=head_hash,
            next_page_token=token,
        )

    return await store.run(query)


async def serve_audited_records(
    store: Store, tables: Sequence[AuditedTable], request: Any, response_type: type[Any]
) -> Any:
    """ListAuditedRecords for any role."""

    def query() -> Any:
        records, token = list_audited(tables, request)
        return response_type(records=records, next_page_token=token)

    return await store.run(query)


def checkpoint_interval_s(config: NodeConfig) -> float:
    """``options.audit_checkpoint_interval_s`` (default 60 s, at least 0.1 s)."""
    value = float(config.options.get("audit_checkpoint_interval_s", DEFAULT_CHECKPOINT_INTERVAL_S))
    if not 0.1 <= value <= 86_400:
        raise ValueError("options.audit_checkpoint_interval_s: must be between 0.1 and 86400")
    return value


VOID_TABLE = "order_void"


def void_state(row: OrderVoid) -> dict[str, object]:
    """The audited fields of an order's void (approval, verification); delivery state such
    as ``forwarded_at`` is the agency's and not evidence."""
    return {
        "order_number": row.order_number,
        "retail_entity_id": row.retail_entity_id,
        "settlement_agency_id": row.settlement_agency_id,
        "reason": row.reason,
        "voided_at": iso(row.voided_at),
    }


def chain_void(table: type[OrderVoid], chain: AuditChainTables, void: voids.Void) -> OrderVoid:
    """Records a void (``voids.record``) and, the first time, appends ORDER_VOIDED: a void is
    a later state change, so it is a new entry, never an edit of the order's entries."""
    first = statements.find(table, order_number=void.order_number) is None
    row = voids.record(table, void)
    if first:
        chain.append("ORDER_VOIDED", f"{VOID_TABLE}/{row.order_number}", void_state(row))
    return row
