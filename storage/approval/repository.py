"""Approval's repository: its tables bound to its own database, and the queries it needs."""

from __future__ import annotations

import peewee

from storage.approval.models import (
    CounterRow,
    EntityRow,
    GuaranteePushRow,
    LicenseKeyRow,
    ProgramSerialRow,
    RegistryChangeRow,
    TransactionMismatchRow,
    TransactionRecordRow,
)
from storage.common import statements
from storage.common.audit_chain import AuditChainTables
from storage.common.database import bind
from storage.common.models import IdempotencyRecord, NodeCredential, OrderVoid

REGISTRY_COUNTER = "registry"


class ApprovalRepository:
    """Approval's bound tables. Every method must run inside ``Store.run``/``transaction``."""

    def __init__(self, database: peewee.Database) -> None:
        self.serials = bind(database, ProgramSerialRow)
        self.entities = bind(database, EntityRow)
        self.license_keys = bind(database, LicenseKeyRow)
        self.counters = bind(database, CounterRow)
        self.idempotency = bind(database, IdempotencyRecord)
        self.credentials = bind(database, NodeCredential)
        self.transactions = bind(database, TransactionRecordRow)
        self.mismatches = bind(database, TransactionMismatchRow)
        self.pushes = bind(database, GuaranteePushRow)
        # The transaction record database's hash chain (nodes/common/audit_chain.py).
        self.audit = AuditChainTables(database)
        self.voids = bind(database, OrderVoid)
        self.registry_changes = bind(database, RegistryChangeRow)
        self.tables: tuple[type[peewee.Model], ...] = (
            self.serials,
            self.entities,
            self.license_keys,
            self.counters,
            self.idempotency,
            self.credentials,
            self.transactions,
            self.mismatches,
            self.pushes,
            *self.audit.tables,
            self.voids,
            self.registry_changes,
        )

    def next_registry_serial(self) -> int:
        """Bumps and returns the registry serial; the row lock orders concurrent changes."""
        counters: type[CounterRow] = self.counters
        counters.insert(name=REGISTRY_COUNTER, value=0).on_conflict_ignore().execute()
        counters.update(value=counters.value + 1).where(counters.name == REGISTRY_COUNTER).execute()
        return int(counters.get_by_id(REGISTRY_COUNTER).value)

    def entity(self, entity_id: str) -> EntityRow | None:
        return statements.find(self.entities, entity_id=entity_id)

    def serial(self, serial: str) -> ProgramSerialRow | None:
        return statements.find(self.serials, serial=serial)

    def license_key(self, key_id: str) -> LicenseKeyRow | None:
        return statements.find(self.license_keys, key_id=key_id)
