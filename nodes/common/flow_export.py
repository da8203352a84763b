"""ExportFlowRecords, shared by every role: a node's records of flows in one shape.

Each role lists its record tables as ``Section``s (kind, query, key, builder); this module
validates the request, pages across the sections by keyset (``paging.across_sections``) and
builds the ``suretynet.type.v1.FlowRecord``s. The operator tools (nodes/operator/) compare
the records of every node; docs/RELIABILITY.md says what each field means per role.

States are normalized so that roles compare: ``state`` is the stored state looked up in the
role's mapping, and a stored state no mapping knows passes through unchanged, so that a new
state shows up in reconciliation instead of breaking the export.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from suretynet.type.v1 import types_pb2

from nodes.common.convert import money, timestamp
from nodes.common.errors import invalid
from nodes.common.paging import across_sections

# Normalized states every role maps its own to; intermediate ones have a lifetime.
PENDING = "PENDING"
CANCELLING = "CANCELLING"
VOIDING = "VOIDING"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
VOIDED = "VOIDED"
FAILED = "FAILED"
INTERMEDIATE_STATES = frozenset({PENDING, CANCELLING, VOIDING})
# The longest key any exported table has (request IDs and cancel request IDs).
MAX_ORDER_NUMBER_LENGTH = 128


@dataclass(frozen=True)
class Section:
    """One table a node exports: its kind, its rows (optionally of one order), its builder."""

    kind: int
    rows: Callable[[str], Any]
    key: Any
    build: Callable[[Any], types_pb2.FlowRecord]


def rows_of(query: Any) -> Callable[[str], Any]:
    """A section's rows: every row of ``query``, or only those of one order number."""
    table = query.model

    def rows(order_number: str) -> Any:
        # A fresh query each time: peewee keeps an executed query's rows.
        return query.where(table.order_number == order_number) if order_number else query.clone()

    return rows


def normalized(stored: str, mapping: Mapping[str, str]) -> str:
    """The normalized state of ``stored``; unknown stored states pass through unchanged."""
    return mapping.get(stored, stored)


def event(
    step: str,
    at: datetime.datetime | None,
    *,
    method: str = "",
    sender: str = "",
    receiver: str = "",
    refusal_reason: str = "",
    detail: str = "",
    attempts: int = 0,
) -> types_pb2.FlowEvent:
    """One recorded step; ``at`` is the naive-UTC moment the node stored."""
    result = types_pb2.FlowEvent(
        step=step,
        method=method,
        from_entity_id=sender,
        to_entity_id=receiver,
        refusal_reason=refusal_reason,
        detail=detail,
        attempts=attempts,
    )
    stamp = timestamp(at)
    if stamp is not None:
        result.occurred_at.CopyFrom(stamp)
    return result


def record(
    *,
    entity_id: str,
    role: int,
    kind: int,
    key: str,
    order_number: str,
    stored_state: str,
    mapping: Mapping[str, str],
    amount_minor: int,
    currency_code: str,
    created_at: datetime.datetime | None,
    updated_at: datetime.datetime | None,
    events: Sequence[types_pb2.FlowEvent] = (),
    counterparts: Sequence[str] = (),
    member_id: str = "",
    anonymous_user_id: str = "",
    attributes: Mapping[str, str] | None = None,
) -> types_pb2.FlowRecord:
    """A FlowRecord; events are sorted oldest first, events with no time last."""
    result = types_pb2.FlowRecord(
        entity_id=entity_id,
        role=role,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        key=key,
        order_number=order_number,
        state=normalized(stored_state, mapping),
        stored_state=stored_state,
        amount=money(amount_minor, currency_code),
        member_id=member_id,
        anonymous_user_id=anonymous_user_id,
        counterpart_entity_ids=[entity for entity in counterparts if entity],
        events=sorted(
            events,
            key=lambda item: (
                not item.HasField("occurred_at"),
                item.occurred_at.seconds,
                item.occurred_at.nanos,
            ),
        ),
        attributes=dict(attributes or {}),
    )
    for field, moment in (("created_at", created_at), ("updated_at", updated_at)):
        stamp = timestamp(moment)
        if stamp is not None:
            getattr(result, field).CopyFrom(stamp)
    return result


def export_page(
    sections: Sequence[Section], request: Any
) -> tuple[list[types_pb2.FlowRecord], str]:
    """One page of records for an ExportFlowRecordsRequest; runs on the database thread.

    Refuses a kind this release does not know (FIELD_INVALID on ``kind``) and a token it did
    not issue (PAGE_TOKEN_INVALID), and an order number longer than any key
    (FIELD_INVALID on ``order_number``). The sections' order is fixed, so tokens stay valid
    between calls; a kind filter only skips sections.
    """
    if request.kind and request.kind not in types_pb2.FlowRecordKind.values():
        raise invalid("kind", f"{request.kind} is not a FlowRecordKind")
    if len(request.order_number) > MAX_ORDER_NUMBER_LENGTH:
        raise invalid("order_number", f"at most {MAX_ORDER_NUMBER_LENGTH} characters")
    chosen = [
        (section.rows(request.order_number), section.key)
        if not request.kind or section.kind == request.kind
        else (section.rows(request.order_number).where(section.key.is_null()), section.key)
        for section in sections
    ]
    rows, token = across_sections(chosen, request.page_size, request.page_token)
    return [sections[index].build(row) for index, row in rows], token


def void_section(
    table: Any,
    *,
    kind: int,
    entity_id: str,
    role: int,
    method: str,
    sender: Callable[[Any], str],
    forwarded: tuple[str, str] | None = None,
) -> Section:
    """The node's voids (``OrderVoid``) as records of ``kind`` with attribute ``void``.

    A void is kept whether or not the node holds the order, and holds no money: its record
    has no amount, and reconciliation compares only the records without the attribute.
    ``forwarded`` (method, receiver) adds the void's delivery onwards (agency to
    verification) as a step of this node, with its attempts; the receiver's own record
    draws the message.
    """

    rows = rows_of(table.select())

    def build(row: Any) -> types_pb2.FlowRecord:
        events = [
            event(
                "void received",
                row.voided_at,
                method=method,
                sender=sender(row),
                receiver=entity_id,
                detail=row.reason,
            )
        ]
        if forwarded is not None and getattr(row, "forwarded_at", None) is not None:
            events.append(
                event(
                    f"void forwarded to {forwarded[1]}",
                    row.forwarded_at,
                    sender=entity_id,
                    detail=forwarded[0],
                    attempts=row.forward_attempts,
                )
            )
        return record(
            entity_id=entity_id,
            role=role,
            kind=kind,
            key=row.order_number,
            order_number=row.order_number,
            stored_state="VOIDED",
            mapping={},
            amount_minor=0,
            currency_code="",
            created_at=row.voided_at,
            updated_at=getattr(row, "forwarded_at", None) or row.voided_at,
            events=events,
            counterparts=[row.retail_entity_id, row.settlement_agency_id],
            attributes={"void": "true", "reason": row.reason},
        )

    return Section(kind, rows, table.order_number, build)
