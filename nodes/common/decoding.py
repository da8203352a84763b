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

from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
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


def invalid_field(message: Message, prefix: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The path of the first field no servicer can use (undefined enum number, impossible
    timestamp) and why, or None."""
    if depth > MAX_DEPTH:
        return None
    if message.DESCRIPTOR.full_name == TIMESTAMP:
        seconds, nanos = message.seconds, message.nanos  # type: ignore[attr-defined]
        if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS or not (
            0 <= nanos <= 999_999_999
        ):
            return prefix.rstrip(".") or "request", "is not a time between years 1 and 9999"
        return None
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.type == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            numbers = list(value) if field.is_repeated else [value]
            for index, number in enumerate(numbers):
                if field.enum_type.values_by_number.get(number) is None:
                    return (f"{path}[{index}]" if field.is_repeated else path), UNKNOWN_ENUM
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            assert entry is not None
            if entry.GetOptions().map_entry:
                found = _unknown_in_map(entry, value, path, depth)
            elif field.is_repeated:
                found = next(
                    (
                        inner
                        for index, item in enumerate(value)
                        if (inner := invalid_field(item, f"{path}[{index}].", depth + 1))
                    ),
                    None,
                )
            else:
                found = invalid_field(value, path + ".", depth + 1)
            if found is not None:
                return found
    return None


def _unknown_in_map(entry: Any, mapping: Any, path: str, depth: int) -> tuple[str, str] | None:
    value_field = entry.fields_by_name["value"]
    for key, item in mapping.items():
        item_path = f"{path}[{key!r}]"
        if value_field.type == FieldDescriptor.TYPE_ENUM:
            if value_field.enum_type.values_by_number.get(item) is None:
                return item_path, UNKNOWN_ENUM
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            found = invalid_field(item, item_path + ".", depth + 1)
            if found is not None:
                return found
    return None
