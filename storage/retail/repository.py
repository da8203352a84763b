"""Retail's repository: its tables bound to its own database."""

from __future__ import annotations

import peewee

from storage.common import statements
from storage.common.database import bind
from storage.common.models import IdempotencyRecord, NodeCredential
from storage.retail.models import (
    CatalogItemRow,
    GuaranteeCacheStateRow,
    GuaranteeRow,
    ReceivedAnonymousIdRow,
    SalesRecordRow,
    ShopOrderRow,
)

CACHE_STATE = "cache"


class RetailRepository:
    """Retail's bound tables. Every use must run inside ``Store.run``/``transaction``."""

    def __init__(self, database: peewee.Database) -> None:
        self.catalog = bind(database, CatalogItemRow)
        self.received_ids = bind(database, ReceivedAnonymousIdRow)
        self.guarantees = bind(database, GuaranteeRow)
        self.cache_state = bind(database, GuaranteeCacheStateRow)
        self.orders = bind(database, ShopOrderRow)
        self.sales = bind(database, SalesRecordRow)
        self.idempotency = bind(database, IdempotencyRecord)
        self.credentials = bind(database, NodeCredential)
        self.tables: tuple[type[peewee.Model], ...] = (
            self.catalog,
            self.received_ids,
            self.guarantees,
            self.cache_state,
            self.orders,
            self.sales,
            self.idempotency,
            self.credentials,
        )

    def state(self) -> GuaranteeCacheStateRow:
        """The cache position row, created on first use."""
        table = self.cache_state
        table.insert(name=CACHE_STATE, registry_serial=0).on_conflict_ignore().execute()
        row: GuaranteeCacheStateRow = table.get_by_id(CACHE_STATE)
        return row

    def order(self, order_number: str) -> ShopOrderRow | None:
        return statements.find(self.orders, order_number=order_number)
