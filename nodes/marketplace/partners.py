"""Calls to partner marketplaces: addresses from approval, recorded calls, the resume loop.

A marketplace calls only addresses approval's registry gives it for an active marketplace
(DirectoryService/GetRelatedMarketplaceInformation), over mutual TLS on the node port.
Every mutating call goes through a PartnerCallRow (see ``outbox``): sent once by the RPC
that recorded it, then by the resume loop until answered or given up.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from typing import Any

from google.protobuf.message import Message
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.marketplace.v1 import marketplace_pb2 as pb
from suretynet.marketplace.v1 import marketplace_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import logs, metrics
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.node import NodeRuntime
from nodes.marketplace import orders, outbox, requester
from nodes.marketplace.requester import Quote
from nodes.marketplace.settings import MarketplaceSettings
from storage.common.models import utc_now
from storage.marketplace.models import MediationContractRow, PartnerCallRow
from storage.marketplace.repository import MarketplaceRepository

log = logging.getLogger(__name__)

# What each recorded call sends: MediationService/<method> takes <method>Request.
REQUEST_TYPES: dict[str, type[Message]] = {
    method.name: getattr(pb, method.input_type.name)
    for method in pb.DESCRIPTOR.services_by_name["MediationService"].methods
}
# Failures after which the same call may still succeed: the partner never refused it.
RETRYABLE = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED)
MAX_CACHED_ADDRESSES = 256


def retryable(error: DomainError) -> bool:
    return error.kind in RETRYABLE


class Partners:
    """This marketplace's link to its partners."""

    def __init__(
        self, runtime: NodeRuntime, repo: MarketplaceRepository, settings: MarketplaceSettings
    ) -> None:
        self._runtime = runtime
        self._store = runtime.store
        self._repo = repo
        self._settings = settings
        self._self_id = runtime.config.entity_id
        # partner ID -> (registered address, monotonic expiry); bounded, short-lived.
        self._addresses: dict[str, tuple[str, float]] = {}
        self._backlog = metrics.register_backlog("marketplace_partner_calls")

    async def address(self, partner_id: str) -> str:
        """The partner's registered address, only if approval lists it as active."""
        cached = self._addresses.get(partner_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        channels = self._runtime.channels
        directory = channels.stub(
            self._runtime.config.approval_address, approval_pb2_grpc.DirectoryServiceStub
        )
        response = await channels.call(
            directory.GetRelatedMarketplaceInformation,
            approval_pb2.GetRelatedMarketplaceInformationRequest(marketplace_id=partner_id),
            peer="approval",
            idempotent=True,
            to_approval=True,
        )
        information = response.information
        if information.status != types_pb2.ENTITY_STATUS_ACTIVE:
            self._addresses.pop(partner_id, None)
            raise DomainError(
                ErrorKind.FAILED_PRECONDITION,
                "ENTITY_SUSPENDED",
                f"partner marketplace {partner_id!r} is not active in approval's registry",
            )
        ttl_s = min(
            float(response.max_cache_age_s),
            self._runtime.config.limits.identity_cache_ttl_s,
        )
        if len(self._addresses) >= MAX_CACHED_ADDRESSES:
            self._addresses.clear()
        # A partner run as several replicas is called through all of them (one channel).
        address = ",".join(information.replica_addresses) or information.registered_address
        self._addresses[partner_id] = (address, time.monotonic() + ttl_s)
        return str(address)

    async def _stub(self, partner_id: str) -> Any:
        address = await self.address(partner_id)
        return self._runtime.channels.stub(address, marketplace_pb2_grpc.MediationServiceStub)

    async def quote(
        self, contract: MediationContractRow, commodity_id: str, quantity: int
    ) -> Quote | DomainError | None:
        """One partner's quote; its transient failure when it cannot be reached right now;
        None when it refuses to quote (it is then not eligible)."""
        partner_id = contract.partner_marketplace_id
        try:
            stub = await self._stub(partner_id)
            answer = await self._runtime.channels.call(
                stub.QuoteCommodity,
                pb.QuoteCommodityRequest(commodity_id=commodity_id, quantity=quantity),
                peer=partner_id,
                idempotent=True,
            )
        except DomainError as error:
            logs.event(
                log, "partner not quoting", logging.WARNING, partner=partner_id, reason=error.reason
            )
            return error if retryable(error) else None
        return Quote(
            contract=contract,
            available=answer.available,
            unit_price_minor=answer.unit_price.amount_minor,
            currency_code=answer.unit_price.currency_code,
            delivery_days=answer.delivery_days,
            commodity_display_name=answer.commodity_display_name,
        )

    async def quotes(
        self, contracts: list[MediationContractRow], commodity_id: str, quantity: int
    ) -> tuple[list[Quote], list[str]]:
        """The partners' quotes, and the partners that could not be reached right now."""
        asked = contracts[: self._settings.max_partners_quoted]
        answers = await asyncio.gather(
            *(self.quote(contract, commodity_id, quantity) for contract in asked)
        )
        quotes = [answer for answer in answers if isinstance(answer, Quote)]
        unreachable = [
            contract.partner_marketplace_id
            for contract, answer in zip(asked, answers, strict=True)
            if isinstance(answer, DomainError)
        ]
        return quotes, unreachable

    async def complete(self, request_id: str) -> Message | None:
        """Sends a recorded call and applies the answer; None if it was answered already.

        A refusal undoes what can be undone and is raised with the partner's reason; a
        partner that cannot be reached leaves the call pending for the resume loop.
        """
        row = await self._store.run(lambda: outbox.pending(self._repo, request_id))
        if row is None:
            return None
        try:
            response = await self._send(row)
        except DomainError as error:
            handle = self._postpone if retryable(error) else self._refused
            await self._store.run(functools.partial(handle, row, error))
            raise
        await self._store.run(lambda: self._apply(row, response))
        return response

    async def _send(self, row: PartnerCallRow) -> Message:
        request = REQUEST_TYPES[row.method].FromString(bytes(row.request))
        stub = await self._stub(row.partner_marketplace_id)
        logs.event(log, "partner call", method=row.method, partner=row.partner_marketplace_id)
        response: Message = await self._runtime.channels.call(
            getattr(stub, row.method), request, peer=row.partner_marketplace_id, idempotent=True
        )
        return response

    def _apply(self, row: PartnerCallRow, response: Message) -> None:
        if outbox.pending(self._repo, row.request_id) is None:
            return  # Another sender applied the same answer first.
        now = utc_now()
        if row.transaction_id:
            transaction = orders.owned(self._repo, None, row.transaction_id)
            request = REQUEST_TYPES[row.method].FromString(bytes(row.request))
            requester.apply_answer(
                self._repo, transaction, row.method, request, response, self._self_id, now
            )
        outbox.finish(self._repo, row.request_id, outbox.DONE, "", now)

    def _refused(self, row: PartnerCallRow, error: DomainError) -> None:
        if outbox.pending(self._repo, row.request_id) is None:
            return
        if row.method == requester.REQUEST and row.transaction_id:
            # Undo cleanly: the partner holds nothing, so neither do we.
            self._repo.transactions.delete().where(
                self._repo.transactions.transaction_id == row.transaction_id
            ).execute()
        logs.event(
            log,
            "partner refused",
            logging.WARNING,
            method=row.method,
            partner=row.partner_marketplace_id,
            reason=error.reason,
        )
        outbox.finish(self._repo, row.request_id, outbox.REFUSED, str(error), utc_now())

    def _postpone(self, row: PartnerCallRow, error: DomainError) -> None:
        backoff_s = min(
            self._settings.resume_backoff_max_s,
            self._settings.resume_interval_s * 2 ** min(row.attempts, 16),
        )
        attempts = outbox.postpone(
            self._repo,
            row.request_id,
            str(error),
            utc_now() + datetime.timedelta(seconds=backoff_s),
        )
        if attempts >= self._settings.resume_max_attempts:
            self._refused(row, error)

    async def resume_once(self) -> int:
        """Sends every recorded call that is due, and expires estimates nobody replied to in
        time; returns how many calls it completed."""
        await self._store.run(
            lambda: orders.expire_estimates(self._repo, utc_now(), self._settings.resume_batch)
        )
        rows = await self._store.run(
            lambda: outbox.due(self._repo, utc_now(), self._settings.resume_batch)
        )
        # Due calls come oldest first, at most one batch: the gauge saturates at the batch.
        self._backlog.set(
            items=len(rows), oldest_age_s=metrics.age_s(rows[0].created_at) if rows else None
        )
        completed = 0
        for row in rows:
            logs.trace_id_var.set(f"resume-{row.request_id}")
            try:
                await self.complete(row.request_id)
                completed += 1
            except DomainError as error:
                logs.event(
                    log,
                    "partner call still open",
                    logging.WARNING,
                    method=row.method,
                    reason=error.reason,
                )
        return completed

    async def resume_loop(self) -> None:
        """Runs until cancelled; after a restart the first pass resumes every open flow."""
        while True:
            try:
                await self.resume_once()
            except Exception:
                log.exception("resume pass failed; trying again next interval")
            await asyncio.sleep(self._settings.resume_interval_s)
