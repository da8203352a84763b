"""Newest-first pages over a table, keyed by (timestamp, ID) so that ties page stably."""

from __future__ import annotations

import datetime
from typing import Any

from nodes.common.convert import decode_page_token, encode_page_token, page_size
from nodes.common.errors import DomainError, ErrorKind, FieldViolation


def newest_first(
    query: Any, moment: Any, key: Any, requested_size: int, token: str
) -> tuple[list[Any], str]:
    """One page of ``query`` ordered by ``moment`` then ``key``, both descending."""
    size = page_size(requested_size)
    after = decode_page_token(token)
    if after:
        stamp, _, last_key = after.partition("|")
        try:
            last = datetime.datetime.fromisoformat(stamp)
        except ValueError:
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT,
                "PAGE_TOKEN_INVALID",
                "page_token: not a token this node issued",
                violations=[FieldViolation("page_token", "not a token this node issued")],
            ) from None
        query = query.where((moment < last) | ((moment == last) & (key < last_key)))
    rows = list(query.order_by(moment.desc(), key.desc()).limit(size + 1))
    if len(rows) <= size:
        return rows, ""
    last_row = rows[size - 1]
    stamp_value = getattr(last_row, moment.name).isoformat()
    return rows[:size], encode_page_token(f"{stamp_value}|{getattr(last_row, key.name)}")
