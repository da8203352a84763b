"""Claim 10: approval pushes settlement agency identification guarantees to push shops.

Whenever a settlement agency's registry entry changes (registration, information change,
status change), its entry gets a new registry serial. For every active shop registered with
the push variant, approval keeps the serial the shop acknowledged and delivers, in serial
order, every guarantee changed after it. Each push names the serial approval believes the
shop holds, so a shop that lost state (or missed pushes while down) sees the gap and catches
up with ListSettlementAgencyGuarantees. A shop that does not answer is retried with
exponential backoff, bounded by ``max_backoff_s``; the push loop itself is bounded per round.

Every approval replica runs this loop over the one registry. A replica claims a shop before
pushing to it (nodes/common/resumer.py, ``claim_row`` on the shop's next attempt), so one
shop receives one sequence of pushes at a time, in serial order, from one replica; the
serials themselves come from the database's registry counter.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from dataclasses import dataclass
from typing import Any

import peewee
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc

from nodes.approval.enrollment import registered_addresses
from nodes.approval.guarantees import settlement_agency_guarantee
from nodes.common import logs, resumer
from nodes.common.errors import DomainError
from nodes.common.node import NodeRuntime
from storage.approval.models import EntityRow
from storage.approval.repository import ApprovalRepository
from storage.common.models import utc_now

log = logging.getLogger(__name__)

# Guarantees pushed to one shop per round; the rest follow in the next round.
MAX_PUSHES_PER_SHOP_PER_ROUND = 50


@dataclass(frozen=True)
class PendingPush:
    """One push shop that is behind: where it is, what it acknowledged, what it lacks."""

    retail_entity_id: str
    address: str
    acknowledged_serial: int
    changes: list[EntityRow]


def pending_pushes(repo: ApprovalRepository, now: datetime.datetime) -> list[PendingPush]:
    """Every active push shop due for an attempt, with the guarantees it has not acknowledged.

    One query finds the shops that are behind (their acknowledged serial below the newest
    agency change) and due, so a round in which every shop is current costs that one query
    however many shops the network has; it used to cost three per push shop, twice a second.
    """
    entities, pushes = repo.entities, repo.pushes
    newest = entities.select(peewee.fn.MAX(entities.registry_serial)).where(
        entities.role == "settlement"
    )
    # Rows as tuples: (entity_id, address, replica_addresses, acknowledged, due_at).
    behind: Any = (
        entities.select(
            entities.entity_id,
            entities.address,
            entities.replica_addresses,
            pushes.acknowledged_serial,
            pushes.next_attempt_at,
        )
        .join(pushes, peewee.JOIN.LEFT_OUTER, on=pushes.retail_entity_id == entities.entity_id)
        .where(
            (entities.role == "retail")
            & (entities.discovery_variant == "push")
            & (entities.status == "ACTIVE")
            & (peewee.fn.COALESCE(pushes.acknowledged_serial, 0) < newest)
            & (pushes.next_attempt_at.is_null() | (pushes.next_attempt_at <= now))
        )
        .tuples()
    )
    pending = []
    for entity_id, address, replica_addresses, acknowledged, due_at in list(behind):
        if due_at is None:
            # A shop's first push: its delivery state starts now, at serial 0.
            pushes.insert(
                retail_entity_id=entity_id, next_attempt_at=now
            ).on_conflict_ignore().execute()
            acknowledged, due_at = 0, now
        changes = list(
            entities.select()
            .where((entities.role == "settlement") & (entities.registry_serial > acknowledged))
            .order_by(entities.registry_serial)
            .limit(MAX_PUSHES_PER_SHOP_PER_ROUND)
        )
        if changes and resumer.claim_row(
            pushes, pushes.retail_entity_id, entity_id, pushes.next_attempt_at, due_at, now
        ):
            shop = entities(
                entity_id=entity_id, address=address, replica_addresses=replica_addresses
            )
            pending.append(
                PendingPush(entity_id, ",".join(registered_addresses(shop)), acknowledged, changes)
            )
    return pending


def release(repo: ApprovalRepository, retail_entity_id: str) -> None:
    """Ends this replica's claim on a shop it pushed everything to: due again at once."""
    pushes = repo.pushes
    pushes.update(next_attempt_at=utc_now()).where(
        pushes.retail_entity_id == retail_entity_id
    ).execute()


def acknowledge(repo: ApprovalRepository, retail_entity_id: str, serial: int) -> None:
    pushes = repo.pushes
    pushes.update(
        acknowledged_serial=serial, failures=0, last_error="", updated_at=utc_now()
    ).where(
        (pushes.retail_entity_id == retail_entity_id) & (pushes.acknowledged_serial < serial)
    ).execute()


def postpone(
    repo: ApprovalRepository, retail_entity_id: str, error: str, base_s: float, max_s: float
) -> None:
    """Records a failed push and when to try again (exponential backoff, bounded)."""
    state = repo.pushes.get_by_id(retail_entity_id)
    state.failures += 1
    delay_s = min(max_s, base_s * 2 ** min(state.failures, 16))
    state.next_attempt_at = utc_now() + datetime.timedelta(seconds=delay_s)
    state.last_error = error[:200]
    state.updated_at = utc_now()
    state.save()


class GuaranteePusher:
    """The background loop that keeps every push shop's guarantee cache current."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: ApprovalRepository,
        *,
        interval_s: float,
        max_backoff_s: float,
    ) -> None:
        self._runtime = runtime
        self._repo = repo
        self._interval_s = interval_s
        self._max_backoff_s = max_backoff_s

    async def run(self) -> None:
        """Pushes every ``interval_s`` until cancelled; one round's failure never stops it."""
        while True:
            logs.trace_id_var.set("guarantee-push")
            try:
                await self.push_round()
            except Exception:
                log.exception("guarantee push round failed")
            await asyncio.sleep(self._interval_s)

    async def push_round(self) -> None:
        repo = self._repo
        for shop in await self._runtime.store.run(lambda: pending_pushes(repo, utc_now())):
            await self._push_to(shop)

    async def _push_to(self, shop: PendingPush) -> None:
        repo, channels = self._repo, self._runtime.channels
        stub = channels.stub(shop.address, retail_pb2_grpc.GuaranteeReceiverServiceStub)
        previous = shop.acknowledged_serial
        for change in shop.changes:
            guarantee = settlement_agency_guarantee(change)
            request = retail_pb2.DeliverSettlementAgencyGuaranteeRequest(
                request_id=f"push-{change.entity_id}-{change.registry_serial}-after-{previous}",
                guarantee=guarantee,
                registry_serial=change.registry_serial,
                previous_registry_serial=previous,
            )
            try:
                await channels.call(
                    stub.DeliverSettlementAgencyGuarantee,
                    request,
                    peer=shop.retail_entity_id,
                    idempotent=True,
                )
            except DomainError as error:
                logs.event(
                    log,
                    "guarantee push failed",
                    logging.WARNING,
                    retail_entity_id=shop.retail_entity_id,
                    reason=error.reason,
                )
                await self._runtime.store.run(
                    functools.partial(
                        postpone,
                        repo,
                        shop.retail_entity_id,
                        str(error),
                        self._interval_s,
                        self._max_backoff_s,
                    )
                )
                return
            serial = change.registry_serial
            await self._runtime.store.run(
                functools.partial(acknowledge, repo, shop.retail_entity_id, serial)
            )
            previous = serial
        await self._runtime.store.run(functools.partial(release, repo, shop.retail_entity_id))
