"""The shop's catalog, and pricing an order from it in integer minor units."""

from __future__ import annotations

import re

from suretynet.retail.v1 import retail_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.convert import money
from nodes.common.errors import DomainError, ErrorKind, Violations
from storage.common import statements
from storage.common.models import utc_now
from storage.retail.models import CatalogItemRow
from storage.retail.repository import RetailRepository

ITEM_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_ITEMS_PER_ORDER = 100
MAX_QUANTITY = 10_000


def upsert_item(repo: RetailRepository, item: retail_pb2.CatalogItem) -> CatalogItemRow:
    """Creates or replaces one catalog item."""
    violations = Violations()
    if not ITEM_ID_PATTERN.match(item.catalog_item_id):
        violations.add(
            "catalog_item.catalog_item_id", "must be 1-64 letters, digits, '.', '_', '-'"
        )
    violations.require("catalog_item.display_name", item.display_name.strip())
    if item.unit_price.amount_minor <= 0:
        violations.add("catalog_item.unit_price.amount_minor", "must be positive")
    if not re.match(r"^[A-Z]{3}$", item.unit_price.currency_code):
        violations.add("catalog_item.unit_price.currency_code", "must be an ISO 4217 code")
    violations.raise_if_any()
    values = {
        "display_name": item.display_name.strip()[:200],
        "description": item.description[:1000],
        "unit_price_minor": item.unit_price.amount_minor,
        "currency_code": item.unit_price.currency_code,
        "available": item.available,
        "updated_at": utc_now(),
    }
    repo.catalog.insert(catalog_item_id=item.catalog_item_id, **values).on_conflict(
        conflict_target=[repo.catalog.catalog_item_id], update=values
    ).execute()
    row: CatalogItemRow = repo.catalog.get_by_id(item.catalog_item_id)
    return row


def item_to_proto(row: CatalogItemRow) -> retail_pb2.CatalogItem:
    return retail_pb2.CatalogItem(
        catalog_item_id=row.catalog_item_id,
        display_name=row.display_name,
        description=row.description,
        unit_price=money(row.unit_price_minor, row.currency_code),
        available=row.available,
    )


def price(
    repo: RetailRepository, items: list[retail_pb2.OrderItem]
) -> tuple[list[types_pb2.OrderLine], types_pb2.Money]:
    """Prices the member's items from the catalog: lines and the total, in one currency."""
    violations = Violations()
    if not items:
        violations.add("items", "at least one item is required")
    if len(items) > MAX_ITEMS_PER_ORDER:
        violations.add("items", f"at most {MAX_ITEMS_PER_ORDER} items")
    for index, item in enumerate(items):
        if not item.catalog_item_id:
            violations.add(f"items[{index}].catalog_item_id", "is required")
        if not 1 <= item.quantity <= MAX_QUANTITY:
            violations.add(f"items[{index}].quantity", f"must be 1 to {MAX_QUANTITY}")
    violations.raise_if_any()
    lines: list[types_pb2.OrderLine] = []
    total, currency = 0, ""
    for index, item in enumerate(items):
        row = statements.find(repo.catalog, catalog_item_id=item.catalog_item_id)
        if row is None or not row.available:
            raise DomainError(
                ErrorKind.NOT_FOUND,
                "CATALOG_ITEM_NOT_FOUND",
                f"items[{index}]: no item {item.catalog_item_id!r} on sale",
                metadata={"catalog_item_id": item.catalog_item_id},
            )
        if currency and row.currency_code != currency:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT,
                "FIELD_INVALID",
                f"items[{index}]: priced in {row.currency_code}, the order in {currency}",
            )
        currency = row.currency_code
        line_minor = row.unit_price_minor * item.quantity
        total += line_minor
        lines.append(
            types_pb2.OrderLine(
                catalog_item_id=row.catalog_item_id,
                description=row.display_name,
                quantity=item.quantity,
                unit_price=money(row.unit_price_minor, currency),
                line_amount=money(line_minor, currency),
            )
        )
    return lines, money(total, currency)
