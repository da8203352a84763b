"""Small proto <-> domain conversions every servicer needs: enums, timestamps, money, pages."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from google.protobuf import timestamp_pb2
from suretynet.type.v1 import types_pb2

from nodes.common.errors import DomainError, ErrorKind, FieldViolation

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


def enum_label(enum: Any, prefix: str, value: int) -> str:
    """``ROLE_RETAIL`` -> ``retail``-style label: the value name without its prefix, lowercase.

    UNSPECIFIED (0) and unknown numbers map to "" so the caller's validation can name them.
    """
    if value == 0:
        return ""
    try:
        return str(enum.Name(value))[len(prefix) :].lower()
    except ValueError:
        return ""


def enum_value(enum: Any, prefix: str, label: str) -> Any:
    """The inverse of enum_label; "" maps to 0 (UNSPECIFIED). Typed Any: stubs use NewTypes."""
    return enum.Value(prefix + label.upper()) if label else 0


def timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A naive-UTC datetime (as stored) as a protobuf Timestamp; None stays unset."""
    if moment is None:
        return None
    # What Timestamp.FromDatetime computes, in a sixth of its time (it runs several times
    # on every RPC). A zone on ``moment`` is ignored, as stored times are UTC.
    since = moment.replace(tzinfo=None) - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000
    )


_EPOCH = datetime.datetime(1970, 1, 1)


def money(amount_minor: int, currency_code: str) -> types_pb2.Money:
    """An integer amount in minor units with its ISO 4217 code, as the wire carries it."""
    return types_pb2.Money(amount_minor=amount_minor, currency_code=currency_code)


def naive_utc(value: timestamp_pb2.Timestamp) -> datetime.datetime:
    """A protobuf Timestamp as the naive-UTC datetime the tables store."""
    return value.ToDatetime()


PAGE_TOKEN_PREFIX = "after:"


def encode_page_token(last_key: str) -> str:
    return base64.b64encode((PAGE_TOKEN_PREFIX + last_key).encode(), altchars=b"-_").decode()


def decode_page_token(token: str) -> str:
    """The key after which the next page starts; "" for the first page."""
    if not token:
        return ""
    try:
        decoded = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    if not decoded.startswith(PAGE_TOKEN_PREFIX):
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
            "page_token: not a token this node issued",
            violations=[FieldViolation("page_token", "not a token this node issued")],
        )
    return decoded[len(PAGE_TOKEN_PREFIX) :]


def page_size(requested: int) -> int:
    if requested < 0:
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT, "FIELD_INVALID", "page_size: must not be negative"
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
