"""Keyset pagination for every List RPC: stable pages, opaque tokens, bounded sizes.

A page token encodes the last key of the previous page (``convert.encode_page_token``),
never an offset, so rows inserted meanwhile neither repeat nor get skipped.
"""

from __future__ import annotations

import datetime
from typing import Any

from nodes.common.convert import decode_page_token, encode_page_token, page_size
from nodes.common.errors import DomainError, ErrorKind, FieldViolation


def by_key(
    query: Any, key: Any, request: Any, *, descending: bool = False
) -> tuple[list[Any], str]:
    """One page of ``query`` ordered by the unique column ``key``, and the next page's token.

    ``request`` is any List request (``page_size``, ``page_token``); must run on the
    database thread (inside ``Store.run``).
    """
    size, after = page_size(request.page_size), decode_page_token(request.page_token)
    if after:
        query = query.where(key < after if descending else key > after)
    rows = list(query.order_by(key.desc() if descending else key).limit(size + 1))
    if len(rows) <= size:
        return rows, ""
    return rows[:size], encode_page_token(str(getattr(rows[size - 1], key.name)))


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


def across_sections(
    sections: list[tuple[Any, Any]], requested_size: int, token: str
) -> tuple[list[tuple[int, Any]], str]:
    """One page over several queries read one after another, each in its key's order.

    ``sections`` is a fixed list of ``(query, unique key column)``; the token records the
    section and the last key, so each section pages by keyset as ``by_key`` does. Returns
    ``(section index, row)`` pairs and the next page's token ("" after the last page). Must
    run on the database thread.
    """
    size = page_size(requested_size)
    after = decode_page_token(token)
    start, last_key = 0, ""
    if after:
        index_text, separator, last_key = after.partition("|")
        if not separator or not index_text.isdigit() or int(index_text) >= len(sections):
            raise DomainError(
                ErrorKind.INVALID_ARGUMENT,
                "PAGE_TOKEN_INVALID",
                "page_token: not a token this node issued",
                violations=[FieldViolation("page_token", "not a token this node issued")],
            )
        start = int(index_text)
    page: list[tuple[int, Any]] = []
    for index in range(start, len(sections)):
        query, key = sections[index]
        if index == start and last_key:
            query = query.where(key > last_key)
        rows = list(query.order_by(key).limit(size - len(page) + 1))
        for row in rows:
            if len(page) == size:
                previous_index, previous = page[-1]
                previous_key = getattr(previous, sections[previous_index][1].name)
                return page, encode_page_token(f"{previous_index}|{previous_key}")
            page.append((index, row))
    return page, ""
