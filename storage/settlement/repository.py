"""Settlement's repository: its tables bound to its own database."""

from __future__ import annotations

import peewee

from storage.common import statements
from storage.common.database import bind
from storage.common.models import (
    DataDisclosureRow,
    IdempotencyRecord,
    LoginFailureRow,
    NodeCredential,
    OrderVoid,
)
from storage.settlement.models import (
    AgencySecretRow,
    AnonymousIdRow,
    CancellationRow,
    MemberNoticeRow,
    MemberRow,
    SessionRow,
    SettlementOrderRow,
)


class SettlementRepository:
    """Settlement's bound tables. Every use must run inside ``Store.run``/``transaction``."""

    def __init__(self, database: peewee.Database) -> None:
        self.secrets = bind(database, AgencySecretRow)
        self.members = bind(database, MemberRow)
        self.sessions = bind(database, SessionRow)
        self.anonymous_ids = bind(database, AnonymousIdRow)
        self.orders = bind(database, SettlementOrderRow)
        self.notices = bind(database, MemberNoticeRow)
        self.cancellations = bind(database, CancellationRow)
        self.idempotency = bind(database, IdempotencyRecord)
        self.credentials = bind(database, NodeCredential)
        # Who saw the member's data (nodes/common/disclosures.py).
        self.data_disclosures = bind(database, DataDisclosureRow)
        self.voids = bind(database, OrderVoid)
        self.login_failures = bind(database, LoginFailureRow)
        self.tables: tuple[type[peewee.Model], ...] = (
            self.login_failures,
            self.secrets,
            self.members,
            self.sessions,
            self.anonymous_ids,
            self.orders,
            self.notices,
            self.cancellations,
            self.idempotency,
            self.credentials,
            self.data_disclosures,
            self.voids,
        )

    def member(self, member_id: str, *, lock: bool = False) -> MemberRow | None:
        """The member; ``lock`` holds its row to the end of the transaction (credit checks)."""
        return statements.find(self.members, lock=lock, member_id=member_id)

    def order(self, order_number: str, *, lock: bool = False) -> SettlementOrderRow | None:
        """The order; ``lock`` holds its row to the end of the transaction (billing state)."""
        return statements.find(self.orders, lock=lock, order_number=order_number)
