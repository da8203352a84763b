"""Money rules of mediation: the mediation charge and its rounding, in integer minor units.

Rounding rule (documented in docs/MARKETPLACE.md): the mediation charge is
``gross_minor * fee_basis_points // 10000``, that is rounded down to the minor unit, so the
supplier is never paid less than its exact share and the charge never exceeds the fee. The
payout is then ``gross - charge`` exactly, so ``billed - paid out == charges`` holds to the
unit with no rounding residue anywhere.
"""

from __future__ import annotations

import re

from nodes.common.errors import invalid

BASIS_POINTS_PER_UNIT = 10_000
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
# Bounds every amount well inside int64 even after multiplying by 10000 basis points.
MAX_AMOUNT_MINOR = 10**14


def mediation_charge_minor(gross_minor: int, fee_basis_points: int) -> int:
    """The mediation charge on ``gross_minor``: basis points of it, rounded down."""
    assert 0 <= gross_minor <= MAX_AMOUNT_MINOR, gross_minor
    assert 0 <= fee_basis_points <= BASIS_POINTS_PER_UNIT, fee_basis_points
    charge = gross_minor * fee_basis_points // BASIS_POINTS_PER_UNIT
    assert 0 <= charge <= gross_minor
    return charge


def check_currency(field_path: str, currency_code: str) -> None:
    if not CURRENCY_PATTERN.match(currency_code):
        raise invalid(field_path, "must be an ISO 4217 code of three upper-case letters")


def check_amount(field_path: str, amount_minor: int, *, allow_zero: bool = False) -> None:
    if amount_minor < 0 or (amount_minor == 0 and not allow_zero):
        raise invalid(field_path, "must be positive" if not allow_zero else "must not be negative")
    if amount_minor > MAX_AMOUNT_MINOR:
        raise invalid(field_path, f"must be at most {MAX_AMOUNT_MINOR}")


def total_minor(unit_price_minor: int, quantity: int) -> int:
    """Quantity times unit price, refused (FIELD_INVALID on quantity) if it is unbounded."""
    total = unit_price_minor * quantity
    if total > MAX_AMOUNT_MINOR:
        raise invalid("quantity", "makes the total exceed the largest amount the network carries")
    return total
