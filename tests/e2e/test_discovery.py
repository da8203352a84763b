"""Discovery variants (b) push and (c) cache keep up with the registry (claims 10, 19).

- push: approval pushes each guarantee change; a shop that was down catches up from its
  stored serial when it comes back;
- cache: a shop pulling from settlement agencies learns of a new agency within its refresh
  bound.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import pki, tls
from nodes.network.local import (
    DEFAULT_TOPOLOGY,
    LocalNetwork,
    NodeSpec,
    issue_serial,
    restart_node,
    stop_node,
)
from tests.e2e.purchase_support import (
    buy,
    request_id,
    rpcs_received,
    set_status,
    start_purchase_network,
)


@pytest.fixture(scope="module")
def purchase_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    return start_purchase_network(network_factory)


async def cached(network: LocalNetwork, shop: str) -> retail_pb2.ListGuaranteeCacheResponse:
    async with network.admin_channel(network.node(shop).address) as channel:
        response: retail_pb2.ListGuaranteeCacheResponse = (
            await retail_pb2_grpc.RetailAdminServiceStub(channel).ListGuaranteeCache(
                retail_pb2.ListGuaranteeCacheRequest(), timeout=10
            )
        )
        return response


async def registry_entry(network: LocalNetwork, entity_id: str) -> approval_pb2.RegisteredEntity:
    async with network.admin_channel(network.node("institution").address) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).GetEntity(
            approval_pb2.GetEntityRequest(entity_id=entity_id), timeout=10
        )
        return response.entity


async def wait_for_guarantee(
    network: LocalNetwork, shop: str, agency: str, serial: int, within_s: float
) -> float:
    """Polls the shop's cache until it holds ``agency`` at ``serial``; returns the wait."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        for guarantee in (await cached(network, shop)).guarantees:
            if guarantee.settlement_agency_id == agency and guarantee.registry_serial >= serial:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{shop} did not cache {agency} at serial {serial} within {within_s}s")


def test_push_shop_catches_up_after_a_restart(purchase_network: LocalNetwork):
    """shop-2 is down while agency-2 is suspended and reinstated; back up, it catches up to
    the registry serial from approval and routes purchases to agency-2 again."""
    network = purchase_network

    async def scenario() -> None:
        await wait_for_guarantee(network, "shop-2", "agency-2", 1, 20)
        catch_ups_before = len(
            rpcs_received(network, "institution", "ListSettlementAgencyGuarantees", "shop-2")
        )
        stop_node(network.node("shop-2"))
        await set_status(network, "agency-2", types_pb2.ENTITY_STATUS_SUSPENDED)
        await set_status(network, "agency-2", types_pb2.ENTITY_STATUS_ACTIVE)
        serial = (await registry_entry(network, "agency-2")).registry_serial
        await restart_node(network, "shop-2")
        await wait_for_guarantee(network, "shop-2", "agency-2", serial, 20)
        catch_ups = rpcs_received(
            network, "institution", "ListSettlementAgencyGuarantees", "shop-2"
        )
        assert len(catch_ups) > catch_ups_before
        cache = await cached(network, "shop-2")
        assert cache.cache_registry_serial >= serial
        purchase = await buy(network, "agency-2", "carol", "shop-2", [("mug", 1)])
        assert purchase.order.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert purchase.order.settlement_agency_id == "agency-2"

    asyncio.run(scenario())


async def register_agency(network: LocalNetwork, entity_id: str, prefix: str) -> None:
    """Registers a new settlement agency with approval, as its installer would."""
    pki_dir = network.data_dir / "pki"
    issued = pki.issue_certificate(
        pki_dir,
        role="settlement",
        entity_id=entity_id,
        ip_addresses=[network.ip],
        out_directory=pki_dir,
    )
    approval = network.node("institution").address
    serial = await issue_serial(network, approval, "settlement", entity_id)
    credentials = tls.client_credentials(
        network.ca.read_bytes(), issued.cert_path.read_bytes(), issued.key_path.read_bytes()
    )
    async with grpc.aio.secure_channel(approval, credentials) as channel:
        await approval_pb2_grpc.EnrollmentServiceStub(channel).RegisterEntity(
            approval_pb2.RegisterEntityRequest(
                request_id=request_id(),
                program_serial=serial,
                role=types_pb2.ROLE_SETTLEMENT,
                entity_id=entity_id,
                display_name=f"Agency {entity_id}",
                address=f"{network.ip}:7911",
                routing_prefix=prefix,
            ),
            timeout=10,
        )


def test_cache_shop_picks_up_a_new_agency_within_its_refresh_bound(purchase_network: LocalNetwork):
    """A new agency registers; shop-3 (cache, refresh every 1 s) has it cached within its
    refresh bound plus one pull, and got it from a settlement agency (claim 19)."""
    network = purchase_network

    def pulls() -> list[str]:
        return sorted(
            stamp
            for agency in ("agency-1", "agency-2", "agency-9")
            for stamp in rpcs_received(network, agency, "GetSettlementAgencyGuarantees", "shop-3")
        )

    async def scenario() -> None:
        await wait_for_guarantee(network, "shop-3", "agency-1", 1, 20)
        await register_agency(network, "agency-7", "7111")
        # Log timestamps are UTC with microseconds, like the nodes' own lines.
        registered = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            serial = (await registry_entry(network, "agency-7")).registry_serial
            await wait_for_guarantee(network, "shop-3", "agency-7", serial, 10)
            seen = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            # The bound is counted in pulls, not seconds (a loaded machine only slows the
            # pulls down): the pull in flight at the registration, or the next one, brought
            # the new agency; never a later one.
            after = [stamp for stamp in pulls() if registered <= stamp <= seen]
            assert len(after) <= 2, after
            assert pulls(), "shop-3 caches what it pulled from the settlement agencies"
        finally:
            await set_status(network, "agency-7", types_pb2.ENTITY_STATUS_TERMINATED)

    asyncio.run(scenario())


# A push shop that never pulls: whatever it knows of the registry, approval pushed to it.
PUSH_ONLY_TOPOLOGY: tuple[NodeSpec, ...] = (
    *(spec for spec in DEFAULT_TOPOLOGY if spec.role in ("approval", "verification")),
    *(spec for spec in DEFAULT_TOPOLOGY if spec.entity_id == "agency-1"),
    NodeSpec(
        "retail",
        "shop-5",
        "Push-Only Shop",
        {"discovery": "push", "push_catch_up": False, "push_catch_up_interval_s": 1},
        True,
    ),
)


def test_a_registry_change_reaches_a_push_shop_whose_pull_is_disabled(
    network_factory: Callable[..., LocalNetwork],
):
    """Claims 10.3, 10.5 (29): with its catch-up turned off, shop-5 learns of agency-1, and
    then of agency-1's status changes, only from approval's pushes; it routes a purchase by
    them. Without the pusher its cache would stay empty."""
    network = network_factory(PUSH_ONLY_TOPOLOGY)

    async def scenario() -> None:
        await wait_for_guarantee(network, "shop-5", "agency-1", 1, 30)
        await set_status(network, "agency-1", types_pb2.ENTITY_STATUS_SUSPENDED)
        suspended = (await registry_entry(network, "agency-1")).registry_serial
        await wait_for_guarantee(network, "shop-5", "agency-1", suspended, 30)
        entry = next(
            g
            for g in (await cached(network, "shop-5")).guarantees
            if g.settlement_agency_id == "agency-1"
        )
        assert entry.status == types_pb2.ENTITY_STATUS_SUSPENDED
        await set_status(network, "agency-1", types_pb2.ENTITY_STATUS_ACTIVE)
        active = (await registry_entry(network, "agency-1")).registry_serial
        await wait_for_guarantee(network, "shop-5", "agency-1", active, 30)
        purchase = await buy(network, "agency-1", "alice", "shop-5", [("tea", 1)])
        assert purchase.order.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert purchase.order.settlement_agency_id == "agency-1"
        pulls = rpcs_received(network, "institution", "ListSettlementAgencyGuarantees", "shop-5")
        assert pulls == [], "shop-5 must never pull; everything it knows was pushed"
        pushes = rpcs_received(network, "shop-5", "DeliverSettlementAgencyGuarantee", "institution")
        assert len(pushes) >= 3

    asyncio.run(scenario())
