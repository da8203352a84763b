"""Commodities with stock and prices, and mediation contracts with partner marketplaces."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.type.v1 import types_pb2

from nodes.common.convert import timestamp
from nodes.common.errors import DomainError, ErrorKind, Violations
from nodes.common.identity import ENTITY_ID_PATTERN
from nodes.marketplace.money import CURRENCY_PATTERN, MAX_AMOUNT_MINOR, mediation_charge_minor
from storage.common import statements
from storage.marketplace.models import CommodityRow, MediationContractRow
from storage.marketplace.repository import MarketplaceRepository

MODES = ("PURCHASER_MARKETPLACE_BILLS", "PARTNER_BILLS")
DIRECTIONS = ("OUTBOUND", "INBOUND", "BIDIRECTIONAL")
MAX_DELIVERY_DAYS = 3650
MAX_PAYMENT_TERMS_DAYS = 365


@dataclass(frozen=True)
class CommodityInput:
    commodity_id: str
    display_name: str
    description: str
    unit_price_minor: int
    currency_code: str
    stock_quantity: int
    delivery_days: int


@dataclass(frozen=True)
class ContractInput:
    contract_id: str
    partner_marketplace_id: str
    fee_basis_points: int
    settlement_mode: str
    direction: str
    payment_terms_days: int
    active: bool
    effective_from: datetime.datetime | None
    effective_until: datetime.datetime | None


def upsert_commodity(
    repo: MarketplaceRepository, commodity: CommodityInput, now: datetime.datetime
) -> CommodityRow:
    violations = Violations()
    if not commodity.commodity_id or len(commodity.commodity_id) > 64:
        violations.add("commodity.commodity_id", "is required, at most 64 characters")
    if not commodity.display_name:
        violations.add("commodity.display_name", "is required")
    if not 0 < commodity.unit_price_minor <= MAX_AMOUNT_MINOR:
        violations.add("commodity.unit_price.amount_minor", "must be positive")
    if not CURRENCY_PATTERN.match(commodity.currency_code):
        violations.add("commodity.unit_price.currency_code", "must be an ISO 4217 code")
    if commodity.stock_quantity < 0:
        violations.add("commodity.stock_quantity", "must not be negative")
    if not 0 <= commodity.delivery_days <= MAX_DELIVERY_DAYS:
        violations.add("commodity.delivery_days", f"must be 0-{MAX_DELIVERY_DAYS}")
    violations.raise_if_any()
    values = {
        "display_name": commodity.display_name,
        "description": commodity.description,
        "unit_price_minor": commodity.unit_price_minor,
        "currency_code": commodity.currency_code,
        "stock_quantity": commodity.stock_quantity,
        "delivery_days": commodity.delivery_days,
        "updated_at": now,
    }
    table = repo.commodities
    if table.update(**values).where(table.commodity_id == commodity.commodity_id).execute() == 0:
        table.create(commodity_id=commodity.commodity_id, **values)
    row: CommodityRow = table.get_by_id(commodity.commodity_id)
    return row


def commodity(repo: MarketplaceRepository, commodity_id: str) -> CommodityRow | None:
    row: CommodityRow | None = statements.find(repo.commodities, commodity_id=commodity_id)
    return row


def take_stock(repo: MarketplaceRepository, commodity_id: str, quantity: int) -> CommodityRow:
    """Takes ``quantity`` units out of stock, or refuses with OUT_OF_STOCK; one statement."""
    table = repo.commodities
    taken = (
        table.update(stock_quantity=table.stock_quantity - quantity)
        .where((table.commodity_id == commodity_id) & (table.stock_quantity >= quantity))
        .execute()
    )
    if taken != 1:
        if commodity(repo, commodity_id) is None:
            raise DomainError(
                ErrorKind.NOT_FOUND, "COMMODITY_NOT_FOUND", f"no commodity {commodity_id!r}"
            )
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "OUT_OF_STOCK",
            f"fewer than {quantity} units of {commodity_id!r} in stock",
        )
    return repo.commodities.get_by_id(commodity_id)


def restock(repo: MarketplaceRepository, commodity_id: str, quantity: int) -> None:
    table = repo.commodities
    table.update(stock_quantity=table.stock_quantity + quantity).where(
        table.commodity_id == commodity_id
    ).execute()


def upsert_contract(
    repo: MarketplaceRepository, contract: ContractInput, self_id: str, now: datetime.datetime
) -> MediationContractRow:
    violations = Violations()
    if not ENTITY_ID_PATTERN.match(contract.contract_id):
        violations.add("contract.contract_id", "must be 1-63 lowercase letters, digits or dashes")
    if not ENTITY_ID_PATTERN.match(contract.partner_marketplace_id):
        violations.add("contract.partner_marketplace_id", "must be a marketplace entity ID")
    elif contract.partner_marketplace_id == self_id:
        violations.add("contract.partner_marketplace_id", "must not be this marketplace")
    if not 0 <= contract.fee_basis_points <= 10_000:
        violations.add("contract.fee_basis_points", "must be 0-10000")
    if contract.settlement_mode not in MODES:
        violations.add("contract.settlement_mode", "must be set")
    if contract.direction not in DIRECTIONS:
        violations.add("contract.direction", "must be set")
    if not 0 <= contract.payment_terms_days <= MAX_PAYMENT_TERMS_DAYS:
        violations.add("contract.payment_terms_days", f"must be 0-{MAX_PAYMENT_TERMS_DAYS}")
    starts = contract.effective_from or now
    if contract.effective_until is not None and contract.effective_until <= starts:
        violations.add("contract.effective_until", "must be after effective_from")
    violations.raise_if_any()
    table = repo.contracts
    existing = statements.find(table, contract_id=contract.contract_id)
    if existing is not None and existing.partner_marketplace_id != contract.partner_marketplace_id:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CONTRACT_TERMS_MISMATCH",
            f"contract {contract.contract_id!r} is with {existing.partner_marketplace_id!r}; "
            "a contract never changes partner",
        )
    values = {
        "partner_marketplace_id": contract.partner_marketplace_id,
        "fee_basis_points": contract.fee_basis_points,
        "settlement_mode": contract.settlement_mode,
        "direction": contract.direction,
        "payment_terms_days": contract.payment_terms_days,
        "active": contract.active,
        "effective_from": starts,
        "effective_until": contract.effective_until,
        "updated_at": now,
    }
    if existing is None:
        table.create(contract_id=contract.contract_id, **values)
    else:
        table.update(**values).where(table.contract_id == contract.contract_id).execute()
    row: MediationContractRow = table.get_by_id(contract.contract_id)
    return row


def in_force(row: MediationContractRow, now: datetime.datetime) -> bool:
    return bool(
        row.active
        and row.effective_from <= now
        and (row.effective_until is None or now < row.effective_until)
    )


def outbound_contracts(
    repo: MarketplaceRepository, now: datetime.datetime
) -> list[MediationContractRow]:
    """Contracts in force under which this marketplace may ask a partner, by contract ID."""
    table = repo.contracts
    rows = table.select().where(table.direction.in_(("OUTBOUND", "BIDIRECTIONAL")))
    return [row for row in rows.order_by(table.contract_id) if in_force(row, now)]


def inbound_contract(
    repo: MarketplaceRepository, contract_id: str, caller_id: str, now: datetime.datetime
) -> MediationContractRow:
    """The contract under which ``caller_id`` may ask this marketplace; CONTRACT_NOT_FOUND."""
    table = repo.contracts
    row: MediationContractRow | None = statements.find(table, contract_id=contract_id)
    if (
        row is None
        or row.partner_marketplace_id != caller_id
        or row.direction not in ("INBOUND", "BIDIRECTIONAL")
        or not in_force(row, now)
    ):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CONTRACT_NOT_FOUND",
            f"no mediation contract {contract_id!r} in force for requests from {caller_id!r}",
        )
    return row


def check_terms(row: MediationContractRow, settlement_mode: str, charge: int, gross: int) -> None:
    """Refuses settlement records that do not follow this side's copy of the contract."""
    expected = mediation_charge_minor(gross, row.fee_basis_points)
    if settlement_mode != row.settlement_mode or charge != expected:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CONTRACT_TERMS_MISMATCH",
            f"contract {row.contract_id!r} here says {row.settlement_mode} at "
            f"{row.fee_basis_points} basis points (charge {expected}); the request says "
            f"{settlement_mode} with charge {charge}",
        )


def money(amount_minor: int, currency_code: str) -> types_pb2.Money:
    return types_pb2.Money(amount_minor=amount_minor, currency_code=currency_code)


def commodity_to_proto(row: CommodityRow) -> pb.Commodity:
    return pb.Commodity(
        commodity_id=row.commodity_id,
        display_name=row.display_name,
        description=row.description,
        unit_price=money(row.unit_price_minor, row.currency_code),
        stock_quantity=row.stock_quantity,
        delivery_days=row.delivery_days,
    )


def contract_to_proto(row: MediationContractRow) -> pb.MediationContract:
    return pb.MediationContract(
        contract_id=row.contract_id,
        partner_marketplace_id=row.partner_marketplace_id,
        fee_basis_points=row.fee_basis_points,
        settlement_mode=pb.SettlementMode.Value("SETTLEMENT_MODE_" + row.settlement_mode),
        payment_terms_days=row.payment_terms_days,
        active=row.active,
        effective_from=timestamp(row.effective_from),
        effective_until=timestamp(row.effective_until),
        direction=pb.MediationDirection.Value("MEDIATION_DIRECTION_" + row.direction),
    )


def seed(
    repo: MarketplaceRepository, options: Mapping[str, Any], self_id: str, now: datetime.datetime
) -> list[str]:
    """Creates what the node config lists and the database lacks; never overwrites.

    For a local network (``suretynet up``): commodities, contract members and contracts an
    operator can try a mediated purchase with. Returns what it created, for the log.
    """
    from nodes.marketplace import members

    created: list[str] = []
    for item in _tables(options, "commodities"):
        if commodity(repo, item["commodity_id"]) is None:
            upsert_commodity(
                repo,
                CommodityInput(
                    commodity_id=item["commodity_id"],
                    display_name=item["display_name"],
                    description=item.get("description", ""),
                    unit_price_minor=int(item["unit_price_minor"]),
                    currency_code=item["currency_code"],
                    stock_quantity=int(item["stock_quantity"]),
                    delivery_days=int(item.get("delivery_days", 3)),
                ),
                now,
            )
            created.append(f"commodity {item['commodity_id']}")
    for item in _tables(options, "members"):
        if statements.find(repo.members, member_id=item["member_id"]) is None:
            fields = {key: value for key, value in item.items() if key != "password"}
            members.enroll(repo, fields, item["password"], now)
            created.append(f"member {item['member_id']}")
    for item in _tables(options, "contracts"):
        if statements.find(repo.contracts, contract_id=item["contract_id"]) is None:
            upsert_contract(
                repo,
                ContractInput(
                    contract_id=item["contract_id"],
                    partner_marketplace_id=item["partner_marketplace_id"],
                    fee_basis_points=int(item["fee_basis_points"]),
                    settlement_mode=item["settlement_mode"],
                    direction=item["direction"],
                    payment_terms_days=int(item.get("payment_terms_days", 30)),
                    active=bool(item.get("active", True)),
                    effective_from=None,
                    effective_until=None,
                ),
                self_id,
                now,
            )
            created.append(f"contract {item['contract_id']}")
    return created


def _tables(options: Mapping[str, Any], key: str) -> Sequence[Mapping[str, Any]]:
    value = options.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"options.{key} must be an array of tables")
    return value


def require_inbound(repo: MarketplaceRepository, caller_id: str, now: datetime.datetime) -> None:
    """Refuses a marketplace that holds no contract in force to ask this one (quotes)."""
    table = repo.contracts
    rows = table.select().where(
        (table.partner_marketplace_id == caller_id)
        & table.direction.in_(("INBOUND", "BIDIRECTIONAL"))
    )
    if not any(in_force(row, now) for row in rows):
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "CONTRACT_NOT_FOUND",
            f"no mediation contract in force for requests from {caller_id!r}",
        )
