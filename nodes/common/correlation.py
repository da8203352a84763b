"""Address correlation (seed 001 claims 8-9, 17-18, 26-27): is the caller where it claims?

On each call from a node, the receiver takes the entity named in the caller's certificate
and the IP the call came from (``context.peer()``). It asks approval for that entity's
related information, which includes its registered address (claim 8 for a shop, claim 9
for a settlement agency, the same for a marketplace), and accepts the caller only if the
two IPs are the same. The institution's own nodes (approval, verification) are correlated
with the addresses this node is configured to reach them at.

Answers are cached for at most ``identity_cache_ttl_s`` (and never longer than approval's
``max_cache_age_s``), in a bounded LRU. So an information change at approval (claims 6-7)
takes effect at every node within that TTL: the documented bound for an address switch.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nodes.common import logs, metrics
from nodes.common.calls import CallInfo
from nodes.common.errors import DomainError, ErrorKind
from nodes.common.identity import EntityIdentity, host_ip, replica_addresses
from nodes.common.interceptor import RpcPolicy

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HIT, _SHARED, _MISS = (
    metrics.CORRELATION_LOOKUPS.labels(result=result) for result in ("hit", "shared", "miss")
)
# Fetches an entity's registered address (host:port) and how long it may be cached (0: not
# at all); raises DomainError.
AddressLookup = Callable[[EntityIdentity], Awaitable[tuple[str, float]]]

REGISTERED_ROLES = frozenset({"retail", "settlement", "marketplace"})


@functools.lru_cache(maxsize=4096)
def _replica_ips(registered: str) -> tuple[IpAddress, ...]:
    """The IPs of a registered (or configured) address's replicas, parsed once per address."""
    return tuple(host_ip(address) for address in replica_addresses(registered))


@dataclass(frozen=True)
class _Entry:
    address: str
    expires_monotonic: float


class RegisteredAddressCache:
    """A bounded, TTL-limited cache of registered addresses with one fetch per entity at once."""

    def __init__(self, lookup: AddressLookup, *, ttl_s: float, max_entries: int) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[EntityIdentity, _Entry] = OrderedDict()
        self._in_flight: dict[EntityIdentity, asyncio.Future[str]] = {}
        self.fetches = 0

    def invalidate(self, identity: EntityIdentity | None = None) -> None:
        """Forgets one entity's address (or all), e.g. after a refusal the operator fixed."""
        if identity is None:
            self._entries.clear()
        else:
            self._entries.pop(identity, None)

    async def address(self, identity: EntityIdentity) -> str:
        now = time.monotonic()
        entry = self._entries.get(identity)
        if entry is not None and entry.expires_monotonic > now:
            self._entries.move_to_end(identity)
            _HIT.inc()
            return entry.address
        pending = self._in_flight.get(identity)
        if pending is not None:
            _SHARED.inc()
            return await asyncio.shield(pending)
        _MISS.inc()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[identity] = future
        try:
            self.fetches += 1
            address, max_age_s = await self._lookup(identity)
            # The source bounds the age too: approval says how stale an answer may get.
            ttl_s = min(self._ttl_s, max_age_s)
            if ttl_s > 0:
                self._entries[identity] = _Entry(address, time.monotonic() + ttl_s)
                self._entries.move_to_end(identity)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            future.set_result(address)
            return address
        except BaseException as error:
            # Failures are not cached: the next call asks approval again.
            future.set_exception(error)
            future.exception()  # marks it retrieved for callers that never awaited it
            raise
        finally:
            del self._in_flight[identity]


def remote_lookup(channels: Any, approval_address: str) -> AddressLookup:
    """Looks registered addresses up at approval (claims 8-9: related entity information)."""
    from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

    # role -> (DirectoryService method, its request type, the request's ID field)
    queries: dict[str, tuple[str, Any, str]] = {
        "retail": (
            "GetRelatedRetailEntityInformation",
            approval_pb2.GetRelatedRetailEntityInformationRequest,
            "retail_entity_id",
        ),
        "settlement": (
            "GetRelatedSettlementAgencyInformation",
            approval_pb2.GetRelatedSettlementAgencyInformationRequest,
            "settlement_agency_id",
        ),
        "marketplace": (
            "GetRelatedMarketplaceInformation",
            approval_pb2.GetRelatedMarketplaceInformationRequest,
            "marketplace_id",
        ),
    }

    async def lookup(identity: EntityIdentity) -> tuple[str, float]:
        method, request_type, id_field = queries[identity.role]
        stub = channels.stub(approval_address, approval_pb2_grpc.DirectoryServiceStub)
        try:
            response = await channels.call(
                getattr(stub, method),
                request_type(**{id_field: identity.entity_id}),
                peer="approval",
                idempotent=True,
                to_approval=True,
            )
        except DomainError as error:
            if error.reason == "ENTITY_NOT_FOUND":
                raise unregistered(identity) from None
            raise
        information = response.information
        # An entity run as several replicas calls from any of their hosts.
        addresses = list(information.replica_addresses) or [information.registered_address]
        return ",".join(addresses), float(response.max_cache_age_s)

    return lookup


def unregistered(identity: EntityIdentity) -> DomainError:
    return DomainError(
        ErrorKind.PERMISSION_DENIED,
        "ADDRESS_UNKNOWN",
        f"{identity.uri} is not registered at approval as a {identity.role} entity",
        metadata={"caller": identity.uri},
    )


class AddressCorrelation:
    """The interceptor check that refuses a node calling from an address not its own."""

    def __init__(
        self,
        cache: RegisteredAddressCache,
        *,
        institution_addresses: dict[str, str],
    ) -> None:
        self.cache = cache
        # role -> configured host:port, for approval and verification (not in the registry).
        self._institution = institution_addresses

    async def __call__(self, info: CallInfo, rpc_policy: RpcPolicy) -> None:
        try:
            await self._correlate(info, rpc_policy)
        except DomainError as error:
            metrics.CORRELATION_REFUSALS.labels(reason=error.reason).inc()
            raise

    async def _correlate(self, info: CallInfo, rpc_policy: RpcPolicy) -> None:
        caller = info.caller
        if caller is None or caller.role == "admin" or not rpc_policy.correlate:
            return  # members prove themselves by session token; operators by admin certs
        observed = info.peer_ip
        if observed is None:
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "ADDRESS_UNKNOWN",
                "the caller's address could not be read from the connection",
            )
        if caller.role in REGISTERED_ROLES:
            registered = await self.cache.address(caller)
        else:
            configured = self._institution.get(caller.role)
            if not configured:
                raise DomainError(
                    ErrorKind.PERMISSION_DENIED,
                    "ADDRESS_UNKNOWN",
                    f"this node has no configured address for {caller.role} to correlate with",
                    metadata={"caller": caller.uri},
                )
            registered = configured
        # An entity run as several replicas is registered (or configured) with each
        # replica's address: a call from any of them is its own.
        accepted = _replica_ips(registered)
        if observed not in accepted:
            expected = ",".join(str(ip) for ip in accepted)
            logs.event(
                log,
                "refused: address mismatch",
                logging.WARNING,
                caller=caller.uri,
                registered=registered,
                observed=str(observed),
                method=info.method,
            )
            raise DomainError(
                ErrorKind.PERMISSION_DENIED,
                "ADDRESS_MISMATCH",
                f"{caller.uri} is registered at {expected} but called from {observed}",
                metadata={
                    "caller": caller.uri,
                    "registered": str(expected),
                    "observed": str(observed),
                },
            )
