"""Outgoing partner calls recorded before they are sent (resumable mediation flows).

A use case that needs a partner to act writes a PartnerCallRow in the same transaction as
its own state change. The call is then sent (at once by the RPC that made it, and again by
the resume loop until it is answered), always with the row's request_id, so a crash at any
point leaves either no effect or an effect the partner will replay.
"""

from __future__ import annotations

import datetime

from google.protobuf.message import Message

from nodes.common.errors import DomainError, ErrorKind
from storage.common import statements
from storage.marketplace.models import PartnerCallRow
from storage.marketplace.repository import MarketplaceRepository

PENDING, DONE, REFUSED = "PENDING", "DONE", "REFUSED"


def enqueue(
    repo: MarketplaceRepository,
    partner_id: str,
    request: Message,
    now: datetime.datetime,
    first_retry_after: datetime.timedelta,
    *,
    transaction_id: str = "",
) -> PartnerCallRow:
    """Records the call of MediationService/<request type less "Request"> to ``partner_id``.

    The row takes the request's own request_id. A call refused earlier under the same ID is
    recorded afresh. With a ``transaction_id``, it refuses (REQUEST_IN_PROGRESS) while
    another call for that transaction is pending: one partner step at a time keeps both
    sides' state machines in step.
    """
    request_id = getattr(request, "request_id")  # noqa: B009 - every recorded call has one
    method = type(request).__name__.removesuffix("Request")
    calls = repo.partner_calls
    busy = calls.get_or_none(
        (calls.transaction_id == transaction_id)
        & (calls.status == PENDING)
        & (calls.request_id != request_id)
    )
    if transaction_id and busy is not None:
        raise DomainError(
            ErrorKind.ABORTED,
            "REQUEST_IN_PROGRESS",
            "the previous step of this transaction is still with the partner; retry shortly",
        )
    values = {
        "partner_marketplace_id": partner_id,
        "method": method,
        "request": request.SerializeToString(deterministic=True),
        "transaction_id": transaction_id,
        "status": PENDING,
        "last_error": "",
        # The RPC that recorded the call sends it itself; the resume loop waits this long.
        "next_attempt_at": now + first_retry_after,
        "created_at": now,
        "completed_at": None,
    }
    existing = statements.find(calls, request_id=request_id)
    if existing is None:
        calls.create(request_id=request_id, **values)
    elif existing.status == REFUSED:
        calls.update(**values).where(calls.request_id == request_id).execute()
    row: PartnerCallRow = calls.get_by_id(request_id)
    return row


def pending(repo: MarketplaceRepository, request_id: str) -> PartnerCallRow | None:
    calls = repo.partner_calls
    row: PartnerCallRow | None = calls.get_or_none(
        (calls.request_id == request_id) & (calls.status == PENDING)
    )
    return row


def finish(
    repo: MarketplaceRepository, request_id: str, status: str, error: str, now: datetime.datetime
) -> None:
    calls = repo.partner_calls
    calls.update(status=status, last_error=error[:500], completed_at=now).where(
        calls.request_id == request_id
    ).execute()


def postpone(
    repo: MarketplaceRepository, request_id: str, error: str, retry_at: datetime.datetime
) -> int:
    """Counts a failed attempt and schedules the next; returns the attempts so far."""
    calls = repo.partner_calls
    calls.update(
        attempts=calls.attempts + 1, last_error=error[:500], next_attempt_at=retry_at
    ).where(calls.request_id == request_id).execute()
    return int(calls.get_by_id(request_id).attempts)


def due(repo: MarketplaceRepository, now: datetime.datetime, limit: int) -> list[PartnerCallRow]:
    calls = repo.partner_calls
    return list(
        calls.select()
        .where((calls.status == PENDING) & (calls.next_attempt_at <= now))
        .order_by(calls.created_at)
        .limit(limit)
    )
