"""Step 4: finding the settlement agency (and its address) that serves an anonymous user ID.

Each shop runs one variant, chosen by ``options.discovery`` in its config:
- ``directory`` (claim 1): ask approval with a settlement agency identification search;
- ``push`` (claim 10): approval pushes guarantees as the registry changes; the shop routes
  from its cache, catches up on start, on a gap in pushed serials, and every
  ``push_catch_up_interval_s`` as a safety net (``push_catch_up = false`` turns every
  catch-up off, so that the shop knows only what approval pushed);
- ``cache`` (claim 19): the shop pulls guarantee deltas from the settlement agencies every
  ``cache_refresh_interval_s`` (bounded; shortened to what the agencies announce) and
  refuses to route from a cache older than ``cache_max_staleness_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

from suretynet.type.v1 import types_pb2

from nodes.common import logs
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.node import NodeRuntime
from nodes.retail import guarantee_cache, orders
from nodes.retail.peers import RetailPeers
from storage.retail.repository import RetailRepository

log = logging.getLogger(__name__)

VARIANTS = ("directory", "push", "cache")


@dataclass(frozen=True)
class DiscoverySettings:
    """The variant and its bounds, from ``[options]``."""

    variant: str
    cache_refresh_interval_s: int
    cache_max_staleness_s: int
    push_catch_up_interval_s: int
    push_catch_up: bool = True

    @classmethod
    def from_options(cls, options: dict[str, object]) -> DiscoverySettings:
        variant = str(options.get("discovery", "directory"))
        if variant not in VARIANTS:
            raise ValueError(f"options.discovery: must be one of {', '.join(VARIANTS)}")

        def bounded(name: str, default: int, low: int, high: int) -> int:
            value = int(str(options.get(name, default)))
            if not low <= value <= high:
                raise ValueError(f"options.{name}: must be between {low} and {high}")
            return value

        refresh = bounded("cache_refresh_interval_s", 60, 1, 3_600)
        catch_up = options.get("push_catch_up", True)
        if not isinstance(catch_up, bool):
            raise ValueError("options.push_catch_up: must be true or false")
        return cls(
            variant=variant,
            cache_refresh_interval_s=refresh,
            cache_max_staleness_s=bounded("cache_max_staleness_s", 10 * refresh, refresh, 86_400),
            push_catch_up_interval_s=bounded("push_catch_up_interval_s", 300, 1, 86_400),
            push_catch_up=catch_up,
        )


class Discovery:
    """Routes anonymous user IDs to settlement agencies under the shop's variant."""

    def __init__(
        self,
        runtime: NodeRuntime,
        repo: RetailRepository,
        peers: RetailPeers,
        settings: DiscoverySettings,
    ) -> None:
        self._store = runtime.store
        self._repo = repo
        self._peers = peers
        self.settings = settings
        self._next_source = 0
        # One refresh at a time: a push-triggered catch-up and the periodic one never race.
        self._refreshing = asyncio.Lock()

    async def find(
        self, anonymous_user_id: str
    ) -> types_pb2.SettlementAgencyIdentificationGuarantee:
        """The guarantee of the agency serving the ID; refuses a non-active agency."""
        if self.settings.variant == "directory":
            return _active(await self._peers.search_settlement_agency(anonymous_user_id))
        return await self._store.run(functools.partial(self._cached, anonymous_user_id))

    def route_for_new_order(self, anonymous_user_id: str) -> orders.Route | None:
        """Step 4 for an order about to be stored, where it needs no peer: a cache or push
        shop reads its guarantees in the transaction that creates the order
        (``orders.order_for_request``), so the order is stored with its route in one trip.
        A directory shop asks approval, a peer, only once the order is stored and the
        shop's own checks have passed (None): a retried or refused request is answered
        from what the shop holds, whatever approval's state, and costs approval nothing."""
        if self.settings.variant == "directory":
            return None
        return functools.partial(self._cached, anonymous_user_id)

    def _cached(self, anonymous_user_id: str) -> types_pb2.SettlementAgencyIdentificationGuarantee:
        """The cache or push variant's lookup, in a transaction the caller runs."""
        staleness = (
            self.settings.cache_max_staleness_s if self.settings.variant == "cache" else None
        )
        row = guarantee_cache.route(self._repo, anonymous_user_id, staleness)
        return _active(guarantee_cache.to_proto(row))

    async def catch_up(self, *, full: bool = False) -> int:
        """Claim 10 catch-up (and first fill): every change approval has after our serial."""
        async with self._refreshing:
            after = 0 if full else (await self._store.run(self._repo.state)).registry_serial
            guarantees, serial = await self._peers.guarantees_from_approval(after)
            return await self._store.run(
                lambda: guarantee_cache.apply_all(
                    self._repo, guarantees, complete_to_serial=serial, full_replacement=full
                )
            )

    async def pull(self, *, full: bool = False) -> int:
        """Claim 19: pull deltas from the next reachable settlement agency, round robin.

        An empty cache has no agency to ask yet; it is filled from approval first.
        """
        sources = await self._store.run(lambda: guarantee_cache.active_sources(self._repo))
        if not sources:
            return await self.catch_up(full=True)
        async with self._refreshing:
            after = 0 if full else (await self._store.run(self._repo.state)).registry_serial
            for offset in range(len(sources)):
                source = sources[(self._next_source + offset) % len(sources)]
                try:
                    response = await self._peers.guarantees_from_agency(
                        source.address, source.settlement_agency_id, after
                    )
                except DomainError as error:
                    logs.event(
                        log,
                        "guarantee pull failed",
                        logging.WARNING,
                        settlement_agency_id=source.settlement_agency_id,
                        reason=error.reason,
                    )
                    continue
                self._next_source = (self._next_source + offset + 1) % len(sources)
                return await self._store.run(
                    functools.partial(
                        guarantee_cache.apply_all,
                        self._repo,
                        list(response.guarantees),
                        complete_to_serial=response.registry_serial,
                        full_replacement=response.full_replacement,
                        refresh_interval_s=response.refresh_interval_s,
                        max_staleness_s=response.max_staleness_s,
                    )
                )
        raise DomainError(
            ErrorKind.UNAVAILABLE,
            "PEER_UNAVAILABLE",
            "no settlement agency answered the guarantee pull",
        )

    async def refresh(self, *, full: bool = False) -> int:
        """Refreshes the cache now by the shop's variant; returns how many guarantees changed."""
        if self.settings.variant == "cache":
            return await self.pull(full=full)
        return await self.catch_up(full=full)

    async def interval_s(self) -> float:
        """How long until the next periodic refresh."""
        if self.settings.variant == "push":
            return float(self.settings.push_catch_up_interval_s)
        state = await self._store.run(self._repo.state)
        announced = state.refresh_interval_s or self.settings.cache_refresh_interval_s
        return float(min(self.settings.cache_refresh_interval_s, announced))

    @property
    def catches_up(self) -> bool:
        """Whether a push shop pulls from approval on start, on a gap and periodically."""
        return self.settings.variant != "push" or self.settings.push_catch_up

    async def run(self) -> None:
        """The periodic refresh of push and cache shops; directory shops have none."""
        if self.settings.variant == "directory" or not self.catches_up:
            return
        while True:
            logs.trace_id_var.set(f"guarantee-{self.settings.variant}")
            try:
                await self.refresh()
            except DomainError as error:
                logs.event(log, "guarantee refresh failed", logging.WARNING, reason=error.reason)
            except Exception:
                log.exception("guarantee refresh failed")
            await asyncio.sleep(await self.interval_s())


def _active(
    guarantee: types_pb2.SettlementAgencyIdentificationGuarantee,
) -> types_pb2.SettlementAgencyIdentificationGuarantee:
    """The guarantee of an active agency; ENTITY_SUSPENDED for any other."""
    if guarantee.status != types_pb2.ENTITY_STATUS_ACTIVE:
        raise DomainError(
            ErrorKind.FAILED_PRECONDITION,
            "ENTITY_SUSPENDED",
            f"settlement agency {guarantee.settlement_agency_id} is not active",
            metadata={"entity_id": guarantee.settlement_agency_id},
        )
    return guarantee
