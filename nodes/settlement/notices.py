"""Notices to members (flow step 7): stored per member with an increasing sequence number.

The member lists them or streams them; a stream resumes after the last sequence it saw.
``NoticeBoard`` wakes the streams of a member when a new notice is committed.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from google.protobuf.message import Message

from nodes.common.errors import DomainError, ErrorKind
from storage.common import statements
from storage.common.models import utc_now
from storage.settlement.models import MemberNoticeRow
from storage.settlement.repository import SettlementRepository

# A member with more open streams than this is refused: each holds a server task.
MAX_STREAMS_PER_MEMBER = 8
LAST_SEQUENCE: statements.Statement[MemberNoticeRow] = statements.Statement(
    lambda t, p: (
        t.select(t.sequence).where(t.member_id == p.member_id).order_by(t.sequence.desc()).limit(1)
    )
)


def add_notice(
    repo: SettlementRepository,
    *,
    member_id: str,
    kind: str,
    order_number: str,
    amount_minor: int,
    currency_code: str,
    message: str,
    payload: Message | Callable[[int], Message] | None,
    notice_id: str | None = None,
) -> MemberNoticeRow:
    """Stores a notice with the member's next sequence number; inside the caller's transaction.

    ``payload`` may be made from that sequence number (a payload that carries it), so the
    notice is written once.
    """
    notices = repo.notices
    sequence = (LAST_SEQUENCE.scalar(notices, member_id=member_id) or 0) + 1
    if callable(payload):
        payload = payload(sequence)
    row: MemberNoticeRow = notices.create(
        notice_id=notice_id or "mn-" + secrets.token_hex(8),
        member_id=member_id,
        sequence=sequence,
        kind=kind,
        order_number=order_number,
        amount_minor=amount_minor,
        currency_code=currency_code,
        message=message[:500],
        payload=payload.SerializeToString(deterministic=True) if payload is not None else b"",
        created_at=utc_now(),
    )
    return row


def notices_after(
    repo: SettlementRepository, member_id: str, kind: str, after_sequence: int, limit: int
) -> list[MemberNoticeRow]:
    """The member's notices of ``kind`` after a sequence number, oldest first."""
    notices = repo.notices
    return list(
        notices.select()
        .where(
            (notices.member_id == member_id)
            & (notices.kind == kind)
            & (notices.sequence > after_sequence)
        )
        .order_by(notices.sequence)
        .limit(limit)
    )


def notices_page(
    repo: SettlementRepository, member_id: str, kind: str, before_sequence: int, limit: int
) -> list[MemberNoticeRow]:
    """The member's notices (of ``kind`` unless empty), newest first, before a sequence."""
    notices = repo.notices
    query = notices.select().where(notices.member_id == member_id)
    if kind:
        query = query.where(notices.kind == kind)
    if before_sequence:
        query = query.where(notices.sequence < before_sequence)
    return list(query.order_by(notices.sequence.desc()).limit(limit))


class NoticeBoard:
    """Wakes a member's open streams when a notice for the member is committed."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def subscribe(self, member_id: str) -> asyncio.Event:
        waiters = self._waiters.setdefault(member_id, set())
        if len(waiters) >= MAX_STREAMS_PER_MEMBER:
            raise DomainError(
                ErrorKind.RESOURCE_EXHAUSTED,
                "REQUEST_IN_PROGRESS",
                f"at most {MAX_STREAMS_PER_MEMBER} notice streams per member; close one",
            )
        event = asyncio.Event()
        waiters.add(event)
        return event

    def unsubscribe(self, member_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(member_id, set())
        waiters.discard(event)
        if not waiters:
            self._waiters.pop(member_id, None)

    def publish(self, member_id: str) -> None:
        for event in self._waiters.get(member_id, set()):
            event.set()
