"""The shop drives the purchase (claims 1, 10, 19: flow steps 4-11) and can resume it.

PlaceOrder prices the items and records the order before the first outgoing call; each
later step is recorded before the next call. Request IDs derive from the order number, so
a resumed flow repeats exactly the calls it made before and peers answer from their
idempotency records: the member is billed once, approval records once.

Outcomes:
- a refusal before the agency billed (discovery, anonymous ID, credit, guarantee) leaves no
  order anywhere: the shop discards its own record;
- a peer that is down leaves the order PENDING at its step; the client retries with the same
  request_id, or the shop's resumer finishes it;
- a refusal of the transaction verification (after billing) marks the order FAILED for the
  operator; no sales record is made.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Callable

from suretynet.retail.v1 import retail_pb2
from suretynet.type.v1 import types_pb2

from nodes.common import logs, metrics
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.node import NodeRuntime
from nodes.retail import catalog, orders
from nodes.retail.discovery import Discovery
from nodes.retail.peers import RetailPeers
from storage.common.models import utc_now
from storage.retail.models import ShopOrderRow
from storage.retail.repository import RetailRepository

log = logging.getLogger(__name__)

# Errors that mean "not now" rather than "no": the flow stays resumable.
TRANSIENT_KINDS = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED)
RESUME_BATCH = 20


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
    ) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self._discovery = discovery
        self._identification = identification
        self._accepted_methods = accepted_methods
        # Orders being driven in this process: a duplicate PlaceOrder must not drive twice.
        self._running: set[str] = set()

    async def place_order(
        self, request: retail_pb2.PlaceOrderRequest
    ) -> retail_pb2.PlaceOrderResponse:
        """PlaceOrder: start (or resume, or replay) the flow for this request_id."""
        orders.validate_place_order(request, self._accepted_methods)
        repo = self._repo
        row = await self._store.run(lambda: orders.existing_order(repo, request))
        if row is None:
            if self._discovery.settings.variant == "directory":
                await self._store.run(
                    lambda: orders.check_delivered_id(repo, request.anonymous_user_id)
                )

            def start() -> ShopOrderRow:
                lines, amount = catalog.price(repo, list(request.items))
                return orders.create_order(
                    repo, orders.NewOrder(request, lines, amount, logs.current_trace_id())
                )

            row = await self._store.run(start)
            metrics.flow_started("purchase")
        return await self.drive(row.order_number)

    async def drive(self, order_number: str) -> retail_pb2.PlaceOrderResponse:
        """Runs the flow from its recorded step to the end; the answer of a finished flow."""
        if order_number in self._running:
            raise DomainError(
                ErrorKind.ABORTED,
                "REQUEST_IN_PROGRESS",
                f"order {order_number} is being processed; retry with the same request_id",
            )
        self._running.add(order_number)
        try:
            return await self._drive(order_number)
        finally:
            self._running.discard(order_number)

    async def _drive(self, order_number: str) -> retail_pb2.PlaceOrderResponse:
        repo = self._repo
        row = await self._store.run(lambda: orders.get_order(repo, order_number))
        for _ in orders.STEPS:
            if row.step == "done":
                return _finished(row)
            try:
                # Each step records its outcome and hands back the row as stored.
                row = await self._step(row)
            except DomainError as error:
                if error.kind in TRANSIENT_KINDS:
                    raise
                if row.step == "verify":
                    await self._store.run(
                        functools.partial(orders.fail, repo, order_number, error.reason)
                    )
                else:
                    await self._store.run(functools.partial(orders.discard, repo, order_number))
                logs.event(
                    log,
                    "purchase refused",
                    order_number=order_number,
                    step=row.step,
                    reason=error.reason,
                )
                metrics.flow_outcome("purchase", "refused", error.reason)
                raise
        raise AssertionError("the flow ends within its steps")

    async def _step(self, row: ShopOrderRow) -> ShopOrderRow:
        repo, number = self._repo, row.order_number
        if row.step == "discover":
            guarantee = await self._discovery.find(row.anonymous_user_id)
            return await self._store.run(lambda: orders.record_route(repo, number, guarantee))
        if row.step == "bill":
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

    async def resume_stalled(self, older_than_s: float) -> int:
        """Finishes flows left midway (after a crash, or a peer that was down)."""
        cutoff = utc_now() - datetime.timedelta(seconds=older_than_s)
        numbers = await self._store.run(lambda: orders.unfinished(self._repo, cutoff, RESUME_BATCH))
        resumed = 0
        for number in numbers:
            if number in self._running:
                continue
            row = await self._store.run(functools.partial(orders.get_order, self._repo, number))
            trace = row.trace_id
            logs.trace_id_var.set(trace or logs.new_trace_id())
            try:
                await self.drive(number)
                resumed += 1
            except DomainError as error:
                logs.event(
                    log, "resume stopped", logging.WARNING, order_number=number, reason=error.reason
                )
        return resumed

    async def run_resumer(self, interval_s: float) -> None:
        """Resumes stalled flows at start and then every ``interval_s``."""
        older_than_s = 0.0
        while True:
            try:
                await self.resume_stalled(older_than_s)
            except Exception:
                log.exception("resuming stalled purchases failed")
            # After the first round, leave in-flight flows to their own callers a while.
            older_than_s = interval_s
            await asyncio.sleep(interval_s)


def _finished(row: ShopOrderRow) -> retail_pb2.PlaceOrderResponse:
    if row.status == "FAILED":
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            row.decline_reason or "TRANSACTION_DECLINED",
            f"order {row.order_number} failed at the transaction verification",
            metadata={"order_number": row.order_number},
        )
    if row.response:
        return retail_pb2.PlaceOrderResponse.FromString(bytes(row.response))
    return retail_pb2.PlaceOrderResponse(order=orders.order_to_proto(row))
