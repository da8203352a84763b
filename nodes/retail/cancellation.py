"""The shop drives a cancellation (claims 2-3, 11-12, 20-21), asked by the member or by the
shop's operator.

Steps, each recorded on the order before the next outgoing call:
1. ``request``: the cancel request notice with the order number to verification;
2. ``notify``: the notice with the shop's identification to the settlement agency, which
   answers with the cancel process result (and, under VERIFIED, the cancel verification);
3. ``record``: approval marks its transaction record cancelled, once verification's records
   prove the cancellation;
then the sales record is marked cancelled.

One cancellation per order at a time: concurrent requests for the same order wait for the
first and get its result; a cancelled order answers every later request with the same
result, and nothing is credited twice. A refusal before the agency decided leaves the order
as it was; a peer that is down leaves the cancellation to be resumed.

Which procedure (NOTIFIED or VERIFIED) is the shop's configuration: ``options.cancel_procedure``.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from suretynet.retail.v1 import retail_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import logs, metrics, resumer
from nodes.common.convert import enum_value, timestamp
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.node import NodeRuntime
from nodes.retail import orders
from nodes.retail.peers import RetailPeers
from nodes.retail.purchase import TRANSIENT_KINDS
from storage.common.models import utc_now
from storage.retail.models import ShopOrderRow
from storage.retail.repository import RetailRepository

log = logging.getLogger(__name__)

PROCEDURES = ("notified", "verified")
CANCEL_STEPS = ("request", "notify", "record", "done")


@dataclass(frozen=True)
class CancelRequest:
    """Who asks to cancel which order, and why."""

    order_number: str
    requested_by: types_pb2.CancelRequester.ValueType
    reason: str
    # Member-initiated: the buyer proves itself with the order's anonymous user ID.
    anonymous_user_id: str | None = None


def begin(
    repo: RetailRepository, request: CancelRequest, procedure: str, shop_id: str
) -> ShopOrderRow:
    """Starts the order's cancellation (status CANCELLING), or finds it started or done."""
    procedure_value = enum_value(types_pb2.CancelProcedure, "CANCEL_PROCEDURE_", procedure)
    if request.anonymous_user_id is not None:
        row = orders.buyers_order(repo, request.order_number, request.anonymous_user_id)
    else:
        row = orders.get_order(repo, request.order_number)
    if row.status in ("CANCELLING", "CANCELLED"):
        return row
    if row.status != "COMPLETED":
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "TRANSACTION_STATE_INVALID",
            f"order {row.order_number} is {row.status.lower()}; only completed orders cancel",
        )
    now = utc_now()
    notice = types_pb2.CancelRequestNotice(
        # A fresh ID per attempt: an attempt refused earlier never blocks a new one.
        cancel_request_id=f"CR-{row.order_number}-{secrets.token_hex(4)}",
        order_number=row.order_number,
        retail_entity_id=shop_id,
        settlement_agency_id=row.settlement_agency_id,
        requested_by=request.requested_by,
        reason=request.reason[:500],
        procedure=procedure_value,
        requested_at=timestamp(now),
    )
    row.status = "CANCELLING"
    row.attempts = 0
    row.next_attempt_at = utc_now()
    row.cancel_step = "request"
    row.cancel_notice = notice.SerializeToString(deterministic=True)
    row.updated_at = now
    row.save()
    metrics.flow_started("cancellation")
    return row


def notice_of(row: ShopOrderRow) -> types_pb2.CancelRequestNotice:
    assert row.cancel_notice is not None, "a cancelling order has its notice"
    return types_pb2.CancelRequestNotice.FromString(bytes(row.cancel_notice))


def advance(repo: RetailRepository, order_number: str, step: str) -> None:
    row = orders.get_order(repo, order_number)
    row.cancel_step = step
    row.updated_at = utc_now()
    row.save()


def record_result(
    repo: RetailRepository,
    order_number: str,
    result: types_pb2.CancelProcessResult,
    verification: types_pb2.CancelVerification | None,
) -> None:
    """The agency decided: keep its result (and verification) for the final answer."""
    row = orders.get_order(repo, order_number)
    answer = retail_pb2.RequestCancellationResponse(cancel_process_result=result)
    if verification is not None:
        answer.cancel_verification.CopyFrom(verification)
    row.cancel_response = answer.SerializeToString(deterministic=True)
    row.cancel_step = "record"
    row.updated_at = utc_now()
    row.save()


def finish(repo: RetailRepository, order_number: str) -> retail_pb2.RequestCancellationResponse:
    """Marks the order and its sales record cancelled, atomically; returns the answer."""
    row = orders.get_order(repo, order_number)
    assert row.cancel_response is not None, "the agency's result comes before the finish"
    answer = retail_pb2.RequestCancellationResponse.FromString(bytes(row.cancel_response))
    now = utc_now()
    sales = repo.sales
    sales.update(
        status="CANCELLED",
        cancelled_at=now,
        cancel_process_result=answer.cancel_process_result.SerializeToString(deterministic=True),
        cancel_verification=answer.cancel_verification.SerializeToString(deterministic=True)
        if answer.HasField("cancel_verification")
        else None,
    ).where(sales.order_number == order_number).execute()
    row.status = "CANCELLED"
    row.cancel_step = "done"
    row.updated_at = now
    answer.order.CopyFrom(orders.order_to_proto(row))
    row.cancel_response = answer.SerializeToString(deterministic=True)
    row.save()
    return answer


def revert(repo: RetailRepository, order_number: str) -> None:
    """A refused cancellation leaves the order as it was (completed, not cancelled)."""
    row = orders.get_order(repo, order_number)
    if row.status == "CANCELLING":
        row.status = "COMPLETED"
        row.cancel_step = ""
        row.cancel_notice = None
        row.cancel_response = None
        row.updated_at = utc_now()
        row.save()


def cancelling(repo: RetailRepository, now: datetime.datetime, limit: int) -> list[ShopOrderRow]:
    """Cancellations whose next attempt is due, the longest-waiting first."""
    table = repo.orders
    return list(
        table.select(
            table.order_number,
            table.cancel_step,
            table.settlement_agency_id,
            table.trace_id,
            table.updated_at,
            table.next_attempt_at,
        )
        .where((table.status == "CANCELLING") & (table.next_attempt_at <= now))
        .order_by(table.next_attempt_at)
        .limit(limit)
    )


class CancellationFlow:
    """Runs and resumes the shop's cancellations."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: RetailRepository,
        peers: RetailPeers,
        identification: Callable[[], types_pb2.RetailEntityIdentification],
        procedure: str,
    ) -> None:
        if procedure not in PROCEDURES:
            raise ValueError(f"options.cancel_procedure: must be one of {', '.join(PROCEDURES)}")
        self._store = runtime.store
        self._shop_id = runtime.config.entity_id
        self._repo = repo
        self._peers = peers
        self._identification = identification
        self.procedure = procedure
        self._locks: dict[str, asyncio.Lock] = {}

    async def cancel(self, request: CancelRequest) -> retail_pb2.RequestCancellationResponse:
        """Cancels the order (or returns the result of its earlier cancellation)."""
        lock = self._locks.setdefault(request.order_number, asyncio.Lock())
        try:
            async with lock:
                return await self._cancel(request)
        finally:
            if not lock.locked() and self._locks.get(request.order_number) is lock:
                self._locks.pop(request.order_number, None)

    async def _cancel(self, request: CancelRequest) -> retail_pb2.RequestCancellationResponse:
        repo = self._repo
        row = await self._store.run(
            functools.partial(begin, repo, request, self.procedure, self._shop_id)
        )
        number = row.order_number
        for _ in CANCEL_STEPS:
            row = await self._store.run(functools.partial(orders.get_order, repo, number))
            if row.cancel_step == "done":
                assert row.cancel_response is not None
                return retail_pb2.RequestCancellationResponse.FromString(bytes(row.cancel_response))
            try:
                await self._step(row)
            except DomainError as error:
                if error.kind in TRANSIENT_KINDS or row.cancel_step == "record":
                    raise
                await self._store.run(functools.partial(revert, repo, number))
                logs.event(log, "cancellation refused", order_number=number, reason=error.reason)
                metrics.flow_outcome("cancellation", "refused", error.reason)
                raise
        raise AssertionError("the cancellation ends within its steps")

    async def _step(self, row: ShopOrderRow) -> None:
        repo, number, notice = self._repo, row.order_number, notice_of(row)
        if row.cancel_step == "request":
            await self._peers.submit_cancel_request_notice(notice)
            await self._store.run(functools.partial(advance, repo, number, "notify"))
        elif row.cancel_step == "notify":
            answer = await self._peers.notify_cancel_request(
                row.settlement_address, row.settlement_agency_id, notice, self._identification()
            )
            verification = (
                answer.cancel_verification if answer.HasField("cancel_verification") else None
            )
            await self._store.run(
                functools.partial(
                    record_result, repo, number, answer.cancel_process_result, verification
                )
            )
        elif row.cancel_step == "record":
            await self._peers.record_transaction_cancellation(number, notice.cancel_request_id)
            await self._store.run(functools.partial(finish, repo, number))
            logs.event(log, "order cancelled", order_number=number)
            metrics.flow_outcome("cancellation", "completed")

    def resumer(self) -> resumer.Resumer:
        """Finishes cancellations left midway, fairly (the shared resumer's backoffs)."""

        async def due(limit: int) -> Sequence[resumer.DueFlow]:
            rows = await self._store.run(
                functools.partial(cancelling, self._repo, utc_now(), limit)
            )
            return [
                # Its age is the time since the cancellation's last step.
                resumer.DueFlow(
                    row.order_number,
                    _cancel_peer(row),
                    row.trace_id,
                    row.updated_at,
                    row.next_attempt_at,
                )
                for row in rows
                if row.order_number not in self._locks
            ]

        async def drive(flow: resumer.DueFlow) -> None:
            await self.cancel(CancelRequest(flow.key, types_pb2.CANCEL_REQUESTER_RETAIL_ENTITY, ""))

        async def postpone(flow: resumer.DueFlow, wait_s: float | None) -> None:
            await self._store.run(functools.partial(orders.postpone, self._repo, flow.key, wait_s))

        return resumer.Resumer(
            "cancellation resumer",
            due=due,
            drive=drive,
            postpone=postpone,
            claim=lambda flow: self._store.run(functools.partial(orders.claim, self._repo, flow)),
        )


def _cancel_peer(row: ShopOrderRow) -> str:
    """The peer a cancellation waits for: the one its next call goes to."""
    return {"request": "verification", "notify": row.settlement_agency_id}.get(
        row.cancel_step, "approval"
    )
