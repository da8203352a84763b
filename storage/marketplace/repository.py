"""The marketplace's repository: its tables bound to its own database."""

from __future__ import annotations

import peewee

from storage.common import statements
from storage.common.database import bind
from storage.common.models import (
    DataDisclosureRow,
    IdempotencyRecord,
    LoginFailureRow,
    NodeCredential,
)
from storage.marketplace import models


class MarketplaceRepository:
    """A marketplace's bound tables. Every use of them runs inside ``Store.run``."""

    def __init__(self, database: peewee.Database) -> None:
        self.settings = bind(database, models.SettingRow)
        self.commodities = bind(database, models.CommodityRow)
        self.members = bind(database, models.ContractMemberRow)
        self.sessions = bind(database, models.SessionRow)
        self.contracts = bind(database, models.MediationContractRow)
        self.standards = bind(database, models.CreditStandardRow)
        self.history = bind(database, models.HistoryEventRow)
        self.enquiries = bind(database, models.CreditEnquiryRow)
        self.transactions = bind(database, models.TransactionRow)
        self.supplied = bind(database, models.SuppliedTransactionRow)
        self.invoices = bind(database, models.InvoiceRow)
        self.payouts = bind(database, models.PayoutRow)
        self.disclosures = bind(database, models.FraudDisclosureRow)
        self.partner_calls = bind(database, models.PartnerCallRow)
        self.idempotency = bind(database, IdempotencyRecord)
        self.credentials = bind(database, NodeCredential)
        self.login_failures = bind(database, LoginFailureRow)
        # Who saw the member's data (nodes/common/disclosures.py).
        self.data_disclosures = bind(database, DataDisclosureRow)
        self.tables: tuple[type[peewee.Model], ...] = (
            self.login_failures,
            self.settings,
            self.commodities,
            self.members,
            self.sessions,
            self.contracts,
            self.standards,
            self.history,
            self.enquiries,
            self.transactions,
            self.supplied,
            self.invoices,
            self.payouts,
            self.disclosures,
            self.partner_calls,
            self.idempotency,
            self.credentials,
            self.data_disclosures,
        )

    def setting(self, name: str) -> str | None:
        row = statements.find(self.settings, name=name)
        return None if row is None else str(row.value)

    def put_setting(self, name: str, value: str) -> None:
        settings = self.settings
        settings.insert(name=name, value=value).on_conflict(
            conflict_target=[settings.name], update={settings.value: value}
        ).execute()
