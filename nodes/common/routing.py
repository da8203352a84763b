"""Routing prefixes: how an anonymous user ID names the settlement agency that issued it.

Every settlement agency registers a routing prefix of 4 to 8 digits at approval, and every
anonymous user ID it issues starts with it, as a card's BIN starts its number (claim 1).
Approval (directory variant) and push and cache shops (claims 10 and 19) route an ID by
its prefix.

An ID can start with only five prefixes, one per length, so a lookup asks for those five
by the indexed ``routing_prefix`` column, longest first: its cost does not grow with the
number of agencies in the network (it used to read every agency on every purchase).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

from storage.common import statements

M = TypeVar("M", bound=peewee.Model)

SHORTEST = 4
LONGEST = 8
PATTERN = re.compile(rf"^[0-9]{{{SHORTEST},{LONGEST}}}$")
DESCRIPTION = f"must be {SHORTEST} to {LONGEST} digits"
# An anonymous user ID: its agency's prefix and the digits the agency made (8 to 32 digits).
ANONYMOUS_ID_PATTERN = re.compile(r"^[0-9]{8,32}$")
ANONYMOUS_ID_DESCRIPTION = "must be the 8-32 digit ID from the settlement agency"
_LEADING_DIGITS = re.compile(r"[0-9]*")
_NAMES = tuple(f"prefix_{length}" for length in range(SHORTEST, LONGEST + 1))


def candidate_prefixes(anonymous_user_id: str) -> dict[str, str]:
    """The prefixes ``anonymous_user_id`` could be routed by, as the parameters of a
    ``lookup``: the first 4, 5, 6, 7 and 8 characters of its leading digits.

    A prefix is digits, so it starts the ID exactly when it starts those digits; whatever
    follows them (a NUL character, which PostgreSQL refuses as a parameter) never reaches
    the database."""
    digits = _LEADING_DIGITS.match(anonymous_user_id)
    leading = digits.group() if digits else ""
    return {
        name: leading[:length]
        for name, length in zip(_NAMES, range(SHORTEST, LONGEST + 1), strict=True)
    }


def lookup(column: Callable[[Any], peewee.Field]) -> statements.Statement[M]:
    """The compiled lookup of a table's row by ``column`` (the table's prefix column), given
    ``candidate_prefixes``: at most one row, the longest prefix where they could nest (a
    shop's cache between two pushes), and of two with one prefix the newer registry entry.
    The table has a ``registry_serial`` column."""

    def build(table: Any, params: statements.Params) -> peewee.Query:
        prefix = column(table)
        return (
            table.select()
            .where(prefix.in_([getattr(params, name) for name in _NAMES]))
            .order_by(peewee.fn.LENGTH(prefix).desc(), table.registry_serial.desc())
            .limit(1)
        )

    return statements.Statement(build)
