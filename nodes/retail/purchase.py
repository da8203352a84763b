"""The shop drives the purchase (claims 1, 10, 19: flow steps 4-11) and can resume it.

PlaceOrder prices the items and records the order before any outgoing call (a cache or push
shop stores it with step 4 done, read from its own tables in the same trip); each later
step is recorded before the next call. Request IDs derive from the order number, so
a resumed flow repeats exactly the calls it made before and peers answer from their
idempotency records: the member is billed once, approval records once. A request_id maps to
one order number forever, and no order row is ever deleted.

Every answer is final or pending (docs/RELIABILITY.md):
- COMPLETED: the sale is recorded;
- DECLINED: refused before the billing search left the shop; no other node holds anything;
- VOIDING / VOIDED: refused (or expired) after the billing search may have reached the
  agency. The shop sends the compensating void to approval and to the agency, which
  releases the member's credit hold and tells verification; nothing is billed. The member
  gets the refusal at once: the void only makes it true everywhere;
- pending: a peer is down. The caller gets UNAVAILABLE (or DEADLINE_EXCEEDED) carrying the
  order number; the shop's resumer finishes the order, or voids it once its lifetime
  (``order_lifetime_s``) has passed before the agency confirmed it.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Sequence

from suretynet.approval.v1 import approval_pb2
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import logs, metrics, resumer
from nodes.common.convert import enum_value
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.node import NodeRuntime
from nodes.retail import orders
from nodes.retail.discovery import Discovery
from nodes.retail.peers import RetailPeers
from storage.common.models import utc_now
from storage.retail.models import ShopOrderRow
from storage.retail.repository import RetailRepository

log = logging.getLogger(__name__)

# Errors that mean "not now" rather than "no": the flow stays resumable.
TRANSIENT_KINDS = resumer.TRANSIENT_KINDS
DEFAULT_ORDER_LIFETIME_S = 300.0


class PurchaseFlow:
    """Runs and resumes purchase flows for one shop."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: RetailRepository,
        peers: RetailPeers,
        discovery: Discovery,
        identification: Callable[[], types_pb2.RetailEntityIdentification],
        accepted_methods: list[str],
        order_lifetime_s: float = DEFAULT_ORDER_LIFETIME_S,
    ) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self._discovery = discovery
        self._identification = identification
        self._accepted_methods = accepted_methods
        self._lifetime = datetime.timedelta(seconds=order_lifetime_s)
        # Orders being driven in this process: a duplicate PlaceOrder must not drive twice.
        self._running: set[str] = set()
        self.resumer = resumer.Resumer(
            "purchase resumer",
            due=self._due,
            drive=self._resume,
            postpone=self._postpone,
            claim=lambda flow: self._store.run(functools.partial(orders.claim, self._repo, flow)),
        )

    async def place_order(
        self, request: retail_pb2.PlaceOrderRequest
    ) -> retail_pb2.PlaceOrderResponse:
        """PlaceOrder: start (or resume, or replay) the flow for this request_id."""
        orders.validate_place_order(request, self._accepted_methods)
        repo = self._repo
        directory = self._discovery.settings.variant == "directory"
        trace_id = logs.current_trace_id()
        # A cache or push shop's step 4 is read in the trip that stores the order.
        route = self._discovery.route_for_new_order(request.anonymous_user_id)
        row, created, failure = await self._store.run(
            lambda: orders.order_for_request(repo, request, directory, trace_id, route)
        )
        # An order made just now is as stored; one made before may be moving (a resumer).
        return await self.drive(row.order_number, row if created else None, failure)

    async def drive(
        self,
        order_number: str,
        row: ShopOrderRow | None = None,
        failure: DomainError | None = None,
    ) -> retail_pb2.PlaceOrderResponse:
        """Runs the flow from its recorded step to the end; the answer of a finished flow.

        ``row`` is the order as this call's own transaction just created it, which nothing
        else can have moved yet (saves reading it again); without it the order is read
        once this call holds the flow. ``failure``: why step 4 failed for that new order,
        answered as the step's own failure.
        """
        if order_number in self._running:
            raise DomainError(
                ErrorKind.ABORTED,
                "REQUEST_IN_PROGRESS",
                f"order {order_number} is being processed; retry with the same request_id",
                metadata={"order_number": order_number},
            )
        self._running.add(order_number)
        try:
            if row is None:
                row = await self._store.run(lambda: orders.get_order(self._repo, order_number))
            return await self._drive(order_number, row, failure)
        finally:
            self._running.discard(order_number)

    async def _drive(
        self, order_number: str, row: ShopOrderRow, failure: DomainError | None
    ) -> retail_pb2.PlaceOrderResponse:
        refusal: DomainError | None = None
        for _ in orders.STEPS:
            if row.status != "PENDING":
                break
            if row.step != "verify" and utc_now() - row.created_at > self._lifetime:
                # Past its lifetime before the agency confirmed it: voided, never finished.
                row = await self._refuse(row, ErrorKind.FAILED_PRECONDITION, "ORDER_EXPIRED")
                break
            try:
                # Each step records its outcome and hands back the row as stored.
                row = await self._step(row, failure)
            except DomainError as error:
                if error.kind in TRANSIENT_KINDS:
                    raise _pending(error, order_number) from error
                row = await self._refuse(row, error.kind, error.reason)
                refusal = error
            failure = None
        if row.status == "VOIDING":
            row = await self._void(row)
        if refusal is not None:
            # The first answer keeps the refusal's own words and details.
            refusal.metadata.update(order_number=order_number, order_status=row.status)
            raise refusal
        return _finished(row)

    async def _refuse(self, row: ShopOrderRow, kind: ErrorKind, reason: str) -> ShopOrderRow:
        number = row.order_number
        refused = await self._store.run(
            functools.partial(orders.refuse, self._repo, number, kind, reason)
        )
        logs.event(log, "purchase refused", order_number=number, step=row.step, reason=reason)
        metrics.flow_outcome("purchase", "refused", reason)
        return refused

    async def _step(self, row: ShopOrderRow, failure: DomainError | None = None) -> ShopOrderRow:
        repo, number = self._repo, row.order_number
        if row.step == "discover":
            if failure is not None:
                raise failure
            guarantee = await self._discovery.find(row.anonymous_user_id)
            return await self._store.run(lambda: orders.record_route(repo, number, guarantee))
        if row.step == "bill":
            if row.attempts:
                # The agency did not answer before: it may have moved (claims 8-9 still
                # apply at its new address), so the route is looked up afresh.
                guarantee = await self._discovery.find(row.anonymous_user_id)
                row = await self._store.run(lambda: orders.reroute(repo, number, guarantee))
            billing_request = orders.billing_search_request(row, self._identification())
            report = await self._peers.search_billing_agency(
                row.settlement_address, row.settlement_agency_id, billing_request
            )
            return await self._store.run(
                lambda: orders.record_completion_report(repo, number, report)
            )
        if row.step == "verify":
            verify_request = orders.verification_request(row, self._runtime.config.entity_id)
            # No wait for the report: the agency files it with verification, and has it
            # acknowledged, before it answers the shop. A missing report is a refusal.
            response = await self._peers.verify_transaction(verify_request)
            verification = response.transaction_verification
            completed = await self._store.run(lambda: orders.complete(repo, number, verification))
            logs.event(log, "sale recorded", order_number=number)
            metrics.flow_outcome("purchase", "completed")
            return completed
        raise AssertionError(f"order {number} has no step {row.step!r}")

    async def _void(self, row: ShopOrderRow) -> ShopOrderRow:
        """Delivers the void to approval, then the agency; VOIDED once both recorded it.

        A peer that is down leaves the order VOIDING for the resumer: the member's answer is
        final already, since neither node acts on the order once it holds the void.
        """
        approval_id, agency_id = orders.void_request_ids(row)
        reason = enum_value(types_pb2.ErrorReason, "ERROR_REASON_", row.decline_reason)
        try:
            await self._peers.record_transaction_void(
                approval_pb2.RecordTransactionVoidRequest(
                    request_id=approval_id,
                    order_number=row.order_number,
                    settlement_agency_id=row.settlement_agency_id,
                    reason=reason,
                )
            )
            await self._peers.void_order(
                row.settlement_address,
                row.settlement_agency_id,
                settlement_pb2.VoidOrderRequest(
                    request_id=agency_id, order_number=row.order_number, reason=reason
                ),
            )
        except DomainError as error:
            level = logging.WARNING if error.kind in TRANSIENT_KINDS else logging.ERROR
            logs.event(
                log,
                "void not delivered",
                level,
                order_number=row.order_number,
                reason=error.reason,
            )
            return row
        voided = await self._store.run(
            functools.partial(orders.mark_voided, self._repo, row.order_number)
        )
        logs.event(log, "order voided", order_number=row.order_number, reason=row.decline_reason)
        metrics.flow_outcome("purchase", "voided", row.decline_reason or "")
        return voided

    async def _due(self, limit: int) -> Sequence[resumer.DueFlow]:
        rows = await self._store.run(lambda: orders.due(self._repo, utc_now(), limit))
        return [
            resumer.DueFlow(
                row.order_number, _waits_for(row), row.trace_id, row.created_at, row.next_attempt_at
            )
            for row in rows
            if row.order_number not in self._running
        ]

    async def _resume(self, flow: resumer.DueFlow) -> None:
        try:
            await self.drive(flow.key)
        except DomainError as error:
            if error.kind in TRANSIENT_KINDS:
                raise
        # A final refusal is an end too; an order still VOIDING is due again later.
        row = await self._store.run(functools.partial(orders.get_order, self._repo, flow.key))
        if row.status in orders.OPEN_STATUSES:
            raise DomainError(
                ErrorKind.UNAVAILABLE, "PEER_UNAVAILABLE", f"order {flow.key} is still open"
            )

    async def _postpone(self, flow: resumer.DueFlow, wait_s: float | None) -> None:
        await self._store.run(functools.partial(orders.postpone, self._repo, flow.key, wait_s))

    async def run_resumer(self, interval_s: float) -> None:
        """Resumes and voids open flows at start and then every ``interval_s``."""
        await self.resumer.run(interval_s)


def _waits_for(row: ShopOrderRow) -> str:
    """The peer an open order waits for: the one its next call goes to."""
    if row.step == "bill":
        return row.settlement_agency_id
    return "approval"


def _pending(error: DomainError, order_number: str) -> DomainError:
    """A transient failure as the member sees it: pending, with the order number to ask."""
    return DomainError(
        error.kind,
        error.reason,
        f"{error.message}; order {order_number} is pending: retry with the same request_id "
        "or read it with GetOrder",
        violations=list(error.violations),
        metadata={**error.metadata, "order_number": order_number, "order_status": "PENDING"},
    )


def _finished(row: ShopOrderRow) -> retail_pb2.PlaceOrderResponse:
    """The first answer again: the completed order, or its final refusal."""
    if row.status in ("DECLINED", "VOIDING", "VOIDED"):
        kind = ErrorKind(row.decline_code) if row.decline_code else ErrorKind.FAILED_PRECONDITION
        raise DomainError(
            kind,
            row.decline_reason or "TRANSACTION_DECLINED",
            f"order {row.order_number} was refused ({row.decline_reason}); nothing is billed",
            metadata={"order_number": row.order_number, "order_status": row.status},
        )
    if row.response:
        return retail_pb2.PlaceOrderResponse.FromString(bytes(row.response))
    return retail_pb2.PlaceOrderResponse(order=orders.order_to_proto(row))
