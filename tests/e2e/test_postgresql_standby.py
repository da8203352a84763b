"""A synchronous standby: the primary dies during a stream of purchases, the standby is
promoted, and no purchase a member saw completed is lost (issue 11).

The network's own PostgreSQL primary and standby (not the session's cluster, which this
test would kill). Every node's URL names both servers with target_session_attrs=read-write,
so once the standby is promoted the nodes' next connections land on it by themselves.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from suretynet.retail.v1 import retail_pb2

from nodes.common.status import decode_rpc_error
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork
from nodes.network.postgres import PostgresCluster, throwaway_directory
from nodes.operator import network as network_file
from nodes.operator.reconcile import reconcile
from tests.e2e.purchase_support import password_of, records, table_rows

TOPOLOGY = tuple(
    spec
    for spec in DEFAULT_TOPOLOGY
    if spec.entity_id in ("institution", "verification", "agency-1", "shop-1")
)
PURCHASES = 24
FAILOVER_AFTER = 6
# Answers after which the same request, retried with the same request_id, may succeed.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
RETRY_BUDGET_S = 45.0
RETRY_BACKOFF_S = 0.2


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    directory = throwaway_directory()
    primary = PostgresCluster.start(directory / "primary", durable=False)
    standby = PostgresCluster.start_standby(directory / "standby", primary)
    try:
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(directory, ignore_errors=True)


def is_primary(cluster: PostgresCluster) -> bool:
    with cluster.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return not cursor.fetchone()[0]


def test_no_completed_purchase_is_lost_when_the_primary_fails_over_to_the_standby(
    clusters: tuple[PostgresCluster, PostgresCluster],
    network_factory: Callable[..., LocalNetwork],
):
    """24 purchases one after another; after the 6th the primary is killed (immediate
    shutdown, as a crash) while purchases go on, and the standby is promoted. A purchase
    refused meanwhile is refused with a retryable code and completes when retried with its
    request_id. Afterwards every purchase is complete in all four places, exactly once, and
    the network-wide reconciliation finds nothing wrong."""
    primary, standby = clusters
    network = network_factory(
        TOPOLOGY, database="postgresql", postgres=primary, postgres_standby=standby
    )
    ca = network.ca.read_bytes()
    refused: list[str] = []
    completed_after_promotion: list[str] = []

    async def failover() -> None:
        await asyncio.to_thread(primary.kill)
        await asyncio.to_thread(standby.promote)

    async def buy(shop: ShopClient, anonymous_id: str, number: int) -> retail_pb2.ShopOrder:
        deadline = time.monotonic() + RETRY_BUDGET_S
        while True:
            try:
                return await shop.place_order(
                    anonymous_id, [("tea", 1)], request_id=f"failover-{number}"
                )
            except grpc.RpcError as error:
                remote = decode_rpc_error(error)
            assert remote.code in RETRYABLE, remote
            assert time.monotonic() < deadline, f"purchase {number} never completed"
            refused.append(f"{remote.code.name}/{remote.reason}")
            await asyncio.sleep(RETRY_BACKOFF_S)  # a client's backoff before retrying

    async def stream() -> list[retail_pb2.ShopOrder]:
        async with AgencyClient(network.node("agency-1").member_address, ca) as member:
            await member.login("alice", password_of("agency-1", "alice"))
            anonymous_id = (await member.anonymous_user_id("shop-1")).anonymous_user_id.value
        orders = []
        promoted: asyncio.Task[None] | None = None
        async with ShopClient(network.node("shop-1").member_address, ca) as shop:
            for number in range(PURCHASES):
                if number == FAILOVER_AFTER:
                    promoted = asyncio.ensure_future(failover())
                order = await buy(shop, anonymous_id, number)
                assert order.status == retail_pb2.ORDER_STATUS_COMPLETED
                orders.append(order)
                if promoted is not None and promoted.done():
                    completed_after_promotion.append(order.order_number)
        assert promoted is not None
        await promoted
        return orders

    orders = asyncio.run(stream())
    assert is_primary(standby)
    assert completed_after_promotion, "purchases went on after the promotion"
    numbers = [order.order_number for order in orders]
    assert len(set(numbers)) == PURCHASES

    async def check() -> None:
        for order in orders:
            found = await records(network, order.order_number, "shop-1", "agency-1")
            assert found["sales"].order_number == order.order_number
            assert found["order"].order_number == order.order_number
            assert found["report"].order_number == order.order_number
            assert found["record"].order_number == order.order_number
            assert found["record"].amount == order.amount

    asyncio.run(check())
    stored = [
        row["order_number"]
        for row in table_rows(network, "agency-1")["settlement_order"]
        if row["order_number"] in numbers
    ]
    assert sorted(stored) == sorted(numbers), "each purchase billed exactly once"
    report = asyncio.run(reconcile(network_file.load(network.data_dir / "network.json")))
    assert report.orders_checked >= PURCHASES
    assert report.mismatches == []
    print(f"failover: {len(refused)} refused attempts, then completed: {sorted(set(refused))}")
