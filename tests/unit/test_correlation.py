"""The registered-address cache and the correlation decision, without a network."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from nodes.common.calls import CallInfo
from nodes.common.correlation import AddressCorrelation, RegisteredAddressCache
from nodes.common.errors import DomainError
from nodes.common.identity import EntityIdentity
from nodes.common.interceptor import policy

SHOP = EntityIdentity("retail", "shop-1")


def call(caller: EntityIdentity | None, ip: str) -> CallInfo:
    return CallInfo(method="/x.Y/Z", peer_ip=ipaddress.ip_address(ip), caller=caller)


def test_cache_serves_repeat_lookups_until_the_ttl_then_asks_again():
    registry = {SHOP: "10.0.0.1:1"}
    clock = {"max_age_s": 60.0}

    async def lookup(identity: EntityIdentity) -> tuple[str, float]:
        return registry[identity], clock["max_age_s"]

    async def scenario() -> None:
        cache = RegisteredAddressCache(lookup, ttl_s=3600, max_entries=8)
        assert await cache.address(SHOP) == "10.0.0.1:1"
        registry[SHOP] = "10.0.0.2:1"
        assert await cache.address(SHOP) == "10.0.0.1:1", "cached within the TTL"
        assert cache.fetches == 1
        cache.invalidate(SHOP)
        assert await cache.address(SHOP) == "10.0.0.2:1"
        clock["max_age_s"] = 0.0  # the source forbids caching: every call asks again
        cache.invalidate()
        await cache.address(SHOP)
        await cache.address(SHOP)
        assert cache.fetches == 4

    asyncio.run(scenario())


def test_cache_is_bounded_and_evicts_the_least_recently_used():
    async def lookup(identity: EntityIdentity) -> tuple[str, float]:
        return "10.0.0.1:1", 60.0

    async def scenario() -> int:
        cache = RegisteredAddressCache(lookup, ttl_s=60, max_entries=2)
        for name in ("a", "b", "a", "c"):
            await cache.address(EntityIdentity("retail", name))
        before = cache.fetches
        await cache.address(EntityIdentity("retail", "a"))  # kept: recently used
        await cache.address(EntityIdentity("retail", "b"))  # evicted by c
        return cache.fetches - before

    assert asyncio.run(scenario()) == 1


def test_concurrent_lookups_for_one_entity_share_one_fetch():
    started = asyncio.Event

    async def scenario() -> int:
        gate = started()

        async def lookup(identity: EntityIdentity) -> tuple[str, float]:
            await gate.wait()
            return "10.0.0.1:1", 60.0

        cache = RegisteredAddressCache(lookup, ttl_s=60, max_entries=8)
        waiters = [asyncio.ensure_future(cache.address(SHOP)) for _ in range(20)]
        await asyncio.sleep(0)  # let every waiter reach the cache before the fetch ends
        gate.set()
        assert set(await asyncio.gather(*waiters)) == {"10.0.0.1:1"}
        return cache.fetches

    assert asyncio.run(scenario()) == 1


def correlation(registered: str) -> AddressCorrelation:
    async def lookup(identity: EntityIdentity) -> tuple[str, float]:
        return registered, 60.0

    return AddressCorrelation(
        RegisteredAddressCache(lookup, ttl_s=60, max_entries=8),
        institution_addresses={"approval": "10.9.9.9:1"},
    )


def test_matching_address_is_accepted_and_a_different_one_refused():
    check = correlation("10.0.0.1:7000")
    rule = policy("retail")
    asyncio.run(check(call(SHOP, "10.0.0.1"), rule))
    with pytest.raises(DomainError) as refused:
        asyncio.run(check(call(SHOP, "10.0.0.2"), rule))
    assert refused.value.reason == "ADDRESS_MISMATCH"
    assert refused.value.metadata == {
        "caller": SHOP.uri,
        "registered": "10.0.0.1",
        "observed": "10.0.0.2",
    }


def test_institution_callers_are_correlated_with_the_configured_address():
    check = correlation("10.0.0.1:7000")
    approval = EntityIdentity("approval", "institution")
    asyncio.run(check(call(approval, "10.9.9.9"), policy("approval")))
    with pytest.raises(DomainError) as refused:
        asyncio.run(check(call(approval, "10.0.0.1"), policy("approval")))
    assert refused.value.reason == "ADDRESS_MISMATCH"
    with pytest.raises(DomainError) as unknown:
        asyncio.run(
            check(call(EntityIdentity("verification", "v"), "10.0.0.1"), policy("verification"))
        )
    assert unknown.value.reason == "ADDRESS_UNKNOWN"


def test_members_operators_and_uncorrelated_rpcs_are_not_address_checked():
    """From an address that would mismatch: accepted, and approval is never even asked."""
    check = correlation("10.0.0.1:7000")
    asyncio.run(check(call(None, "192.0.2.1"), policy(members=True)))
    asyncio.run(check(call(EntityIdentity("admin", "operator"), "192.0.2.1"), policy("admin")))
    asyncio.run(check(call(SHOP, "192.0.2.1"), policy("retail", correlate=False)))
    assert check.cache.fetches == 0
    with pytest.raises(DomainError):  # the same shop on a correlated RPC is refused
        asyncio.run(check(call(SHOP, "192.0.2.1"), policy("retail")))
    assert check.cache.fetches == 1


def test_every_replicas_address_is_accepted_and_any_other_refused():
    """Claims 8-9 with replicas: an entity registered with a set of addresses (one per
    process over its database) calls from any of them; any other address is refused."""
    check = correlation("10.0.0.1:7000,10.0.0.2:7000")
    rule = policy("retail")
    asyncio.run(check(call(SHOP, "10.0.0.1"), rule))
    asyncio.run(check(call(SHOP, "10.0.0.2"), rule))
    with pytest.raises(DomainError) as refused:
        asyncio.run(check(call(SHOP, "10.0.0.3"), rule))
    assert refused.value.reason == "ADDRESS_MISMATCH"
    assert refused.value.metadata["registered"] == "10.0.0.1,10.0.0.2"


def test_replicas_of_the_institution_are_each_accepted():
    """approval_address / verification_address may list replicas: each is the institution."""

    async def lookup(identity: EntityIdentity) -> tuple[str, float]:
        raise AssertionError("the institution is correlated with its configured addresses")

    check = AddressCorrelation(
        RegisteredAddressCache(lookup, ttl_s=60, max_entries=8),
        institution_addresses={"approval": "10.9.9.9:1,10.9.9.8:1"},
    )
    approval = EntityIdentity("approval", "institution")
    rule = policy("approval")
    asyncio.run(check(call(approval, "10.9.9.8"), rule))
    with pytest.raises(DomainError) as refused:
        asyncio.run(check(call(approval, "10.9.9.7"), rule))
    assert refused.value.reason == "ADDRESS_MISMATCH"
