"""Verification's repository: its tables bound to its own database."""

from __future__ import annotations

import peewee

from storage.common.audit_chain import AuditChainTables
from storage.common.database import bind
from storage.common.models import IdempotencyRecord, NodeCredential, OrderVoid
from storage.verification.models import CancelProcessRow, CancelRequestRow, TransactionReportRow


class VerificationRepository:
    """Verification's bound tables. Every use must run inside ``Store.run``/``transaction``."""

    def __init__(self, database: peewee.Database) -> None:
        self.reports = bind(database, TransactionReportRow)
        self.cancel_requests = bind(database, CancelRequestRow)
        self.cancel_processes = bind(database, CancelProcessRow)
        self.idempotency = bind(database, IdempotencyRecord)
        self.credentials = bind(database, NodeCredential)
        # The chain of reports and cancellation notices (nodes/common/audit_chain.py).
        self.audit = AuditChainTables(database)
        self.voids = bind(database, OrderVoid)
        self.tables: tuple[type[peewee.Model], ...] = (
            self.reports,
            self.cancel_requests,
            self.cancel_processes,
            self.idempotency,
            self.credentials,
            *self.audit.tables,
            self.voids,
        )
