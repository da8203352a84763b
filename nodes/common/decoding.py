"""Request decoding at the edge: bytes that are no request, and enum numbers nobody defined.

The interceptor decodes every request itself (gRPC hands it the raw bytes), so that
- bytes that do not parse as the RPC's request type (truncated, invalid UTF-8 in a string,
  nesting beyond protobuf's recursion limit) are refused with INVALID_ARGUMENT /
  REQUEST_UNDECODABLE, never UNKNOWN, and logged at INFO like any other refusal;
- an enum field holding a number its enum does not define (proto3 keeps such numbers as
  plain ints) is refused with INVALID_ARGUMENT / FIELD_INVALID naming the field, before any
  servicer or enum conversion sees it;
- a ``google.protobuf.Timestamp`` outside years 1-9999 or with nanos outside 0-999999999
  (which ``ToDatetime`` cannot convert) is refused the same way.
One check here covers every RPC of every node.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from nodes.common.errors import DomainError, ErrorKind, FieldViolation, invalid

# Nesting deeper than protobuf's own recursion limit never decodes; this bounds the walk.
MAX_DEPTH = 100
TIMESTAMP = "google.protobuf.Timestamp"
# The range protobuf's Timestamp allows: 0001-01-01 to 9999-12-31 (UTC).
MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS = -62135596800, 253402300799


def decode_request(deserializer: Callable[[bytes], Any] | None, body: bytes) -> Any:
    """Parses ``body`` with the RPC's deserializer; refuses anything that is not a request."""
    if deserializer is None:
        return body
    try:
        request = deserializer(body)
    except Exception as error:  # every parse failure is the caller's bad bytes
        raise DomainError(
            ErrorKind.INVALID_ARGUMENT,
            "REQUEST_UNDECODABLE",
            f"the request body is not a valid serialized request of this RPC ({len(body)} bytes)",
            violations=[FieldViolation("request", "the body does not parse as this RPC's request")],
        ) from error
    if isinstance(request, Message):
        found = invalid_field(request)
        if found is not None:
            raise invalid(*found)
    return request


UNKNOWN_ENUM = "holds an enum number the protocol does not define"


# How each field that can hold something invalid is walked (see ``_checked_fields``).
_ENUM, _ENUMS, _MESSAGE, _MESSAGES, _ENUM_MAP, _MESSAGE_MAP = range(6)


def invalid_field(message: Message, prefix: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The path of the first field no servicer can use (undefined enum number, impossible
    timestamp) and why, or None."""
    if depth > MAX_DEPTH:
        return None
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == TIMESTAMP:
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS or not (
            0 <= nanos <= 999_999_999
        ):
            return prefix.rstrip(".") or "request", "is not a time between years 1 and 9999"
        return None
    for field, how in _checked_fields(descriptor):
        found = _invalid_in(field, how, message, prefix + field.name, depth)
        if found is not None:
            return found
    return None


def _invalid_in(
    field: FieldDescriptor, how: int, message: Message, path: str, depth: int
) -> tuple[str, str] | None:
    if how == _MESSAGE:
        if not message.HasField(field.name):
            return None
        return invalid_field(getattr(message, field.name), path + ".", depth + 1)
    value = getattr(message, field.name)
    if how == _ENUM:
        return (path, UNKNOWN_ENUM) if not _defined(field, value) else None
    if how == _ENUMS:
        for index, number in enumerate(value):
            if not _defined(field, number):
                return f"{path}[{index}]", UNKNOWN_ENUM
    elif how == _MESSAGES:
        for index, item in enumerate(value):
            if (found := invalid_field(item, f"{path}[{index}].", depth + 1)) is not None:
                return found
    else:
        value_field = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
        for key, item in value.items():
            item_path = f"{path}[{key!r}]"
            if how == _ENUM_MAP:
                if not _defined(value_field, item):
                    return item_path, UNKNOWN_ENUM
            elif (found := invalid_field(item, item_path + ".", depth + 1)) is not None:
                return found
    return None


def _defined(field: FieldDescriptor, number: int) -> bool:
    return field.enum_type.values_by_number.get(number) is not None  # type: ignore[union-attr]


@functools.cache
def _checked_fields(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, int], ...]:
    """The fields of a message type that can hold an undefined enum number or an impossible
    timestamp, at any depth, and how each is walked. Worked out once per type: most fields
    of most requests are strings and numbers, and are not visited at all."""
    checked: list[tuple[FieldDescriptor, int]] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_ENUM:
            checked.append((field, _ENUMS if field.is_repeated else _ENUM))
            continue
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        entry = field.message_type
        assert entry is not None
        if entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_ENUM:
                checked.append((field, _ENUM_MAP))
            elif value_field.type == FieldDescriptor.TYPE_MESSAGE and _may_be_invalid(
                value_field.message_type
            ):
                checked.append((field, _MESSAGE_MAP))
        elif _may_be_invalid(entry):
            checked.append((field, _MESSAGES if field.is_repeated else _MESSAGE))
    return tuple(checked)


def _may_be_invalid(descriptor: Descriptor | None, seen: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold, at any depth, what ``invalid_field`` refuses."""
    if descriptor is None or descriptor.full_name in seen:
        # A type that contains itself: its other fields decide.
        return False
    if descriptor.full_name == TIMESTAMP:
        return True
    inner = seen | {descriptor.full_name}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_ENUM:
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE and _may_be_invalid(
            field.message_type, inner
        ):
            return True
    return False
