"""N replicas per role (issue 11): approval, verification and a settlement agency each run
as two processes over their one PostgreSQL database; one of each is killed (SIGKILL) in the
middle of a stream of purchases.

Every purchase completes, or fails cleanly with a retryable code and completes when the
member retries it with the same request_id; afterwards the reconciliation finds nothing
wrong. Both replicas of each role served calls before the kill: the shops and the agency
spread their calls over them (round_robin), and approval's registry holds every replica's
address, so address correlation accepts each.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

from nodes.common.convert import money
from nodes.common.status import decode_rpc_error
from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo_data import CURRENCY
from nodes.network.flows.purchase import wait_for_cached_agency
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, RunningNode, start_network
from nodes.operator import network as network_file
from nodes.operator.reconcile import reconcile
from tests.e2e.purchase_support import password_of
from tests.support import suretynet

# The institution, one agency and both shops that need no cache refresh: the roles that
# run as replicas, and the two ways a shop finds the agency (directory, push).
TOPOLOGY = tuple(
    spec
    for spec in DEFAULT_TOPOLOGY
    if spec.role in ("approval", "verification")
    or spec.entity_id in ("agency-1", "shop-1", "shop-2")
)
REPLICATED = ("institution", "verification", "agency-1")
PURCHASES = 24
CONCURRENT = 4
# The kill comes once this many purchases completed, with others in flight; the rest run
# while one replica of each role is gone.
BEFORE_KILL = 8
# Codes a member retries with the same request_id (docs/RELIABILITY.md).
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
MAX_TRIES = 30


@dataclass
class Stream:
    """What the stream of purchases saw."""

    completed: dict[str, str] = field(default_factory=dict)  # request_id -> order number
    # How many had completed when the replicas were dead (SIGKILL sent and reaped).
    completed_before_kill: int = 0
    retries: list[str] = field(default_factory=list)  # code/reason of each retried answer


def replicas_of(network: LocalNetwork, entity_id: str) -> list[RunningNode]:
    return [node for node in network.nodes if node.spec.entity_id == entity_id]


def served_calls(network: LocalNetwork, node: RunningNode) -> int:
    """The RPCs a node process logged as served (its own log file)."""
    log = network.data_dir / "logs" / f"{node.log_name}.log"
    return sum(
        1
        for line in log.read_text().splitlines()
        if line.startswith("{") and json.loads(line).get("msg") == "rpc"
    )


@pytest.fixture(scope="module")
def replica_network(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalNetwork]:
    cluster = request.getfixturevalue("postgres_cluster")
    network = asyncio.run(
        start_network(
            tmp_path_factory.mktemp("replicas"),
            TOPOLOGY,
            database="postgresql",
            postgres=cluster,
            database_prefix=f"r{uuid.uuid4().hex[:8]}_",
            replicas=2,
        )
    )
    try:
        asyncio.run(wait_for_cached_agency(network, "shop-2", "agency-1"))
        yield network
    finally:
        network.stop()


async def purchase(shop: ShopClient, anonymous_id: str, stream: Stream) -> None:
    """One member purchase, retried with its request_id while the answer is retryable."""
    request_id = uuid.uuid4().hex
    for _ in range(MAX_TRIES):
        try:
            order = await shop.place_order(anonymous_id, [("tea", 1)], request_id=request_id)
        except grpc.RpcError as error:
            remote = decode_rpc_error(error)
            assert remote.code in RETRYABLE, f"not retryable: {remote}"
            stream.retries.append(f"{remote.code.name}/{remote.reason}")
            await asyncio.sleep(0.2)
            continue
        if order.status == retail_pb2.ORDER_STATUS_COMPLETED:
            stream.completed[request_id] = order.order_number
            return
        assert order.status == retail_pb2.ORDER_STATUS_PENDING, order
        stream.retries.append("PENDING")
        await asyncio.sleep(0.2)
    raise AssertionError(f"purchase {request_id} did not complete in {MAX_TRIES} tries")


def test_the_registry_holds_every_replicas_address(replica_network: LocalNetwork):
    """Approval's registry lists both replicas of the agency; correlation accepts either."""
    network = replica_network
    expected = [node.address for node in replicas_of(network, "agency-1")]

    async def read() -> list[str]:
        approval = next(
            n for n in network.nodes if n.spec.role == "approval" and n.process.poll() is None
        )
        async with network.admin_channel(approval.address) as channel:
            response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                approval_pb2.ListEntitiesRequest(), timeout=10
            )
        entity = next(e for e in response.entities if e.entity_id == "agency-1")
        assert entity.address == expected[0]
        return list(entity.replica_addresses)

    assert asyncio.run(read()) == expected


def test_replicas_need_postgresql(tmp_path_factory: pytest.TempPathFactory):
    """Several processes on one SQLite file is refused before anything starts, from the
    CLI (exit 2, a sentence saying why) and from the function `up` and benchmarks use."""
    directory = tmp_path_factory.mktemp("sqlite-replicas")
    with pytest.raises(ValueError, match="--replicas 2 needs --database postgresql"):
        asyncio.run(start_network(directory, TOPOLOGY, replicas=2))
    refused = suretynet("up", "--data-dir", str(directory), "--replicas", "2")
    assert refused.returncode == 2
    assert "--replicas 2 needs --database postgresql" in refused.stderr
    zero = suretynet(
        "up", "--data-dir", str(directory), "--database", "postgresql", "--replicas", "0"
    )
    assert zero.returncode == 2 and "choose 1 to" in zero.stderr
    assert not (directory / "pki").exists()


def test_the_login_throttle_holds_across_replicas(replica_network: LocalNetwork):
    """Wrong passwords spread over both agency replicas count together (the throttle is in
    the agency's database): after five, the right password is refused at either replica."""
    ca = grpc.ssl_channel_credentials(replica_network.ca.read_bytes())
    members = [node.member_address for node in replicas_of(replica_network, "agency-1")]

    async def attempt(address: str, password: str) -> str:
        async with grpc.aio.secure_channel(address, ca) as channel:
            try:
                await settlement_pb2_grpc.MemberServiceStub(channel).Login(
                    settlement_pb2.LoginRequest(member_id="bob", password=password), timeout=10
                )
            except grpc.RpcError as error:
                return decode_rpc_error(error).reason
            return "OK"

    async def scenario() -> list[str]:
        found = [await attempt(members[index % 2], f"guess-{index}") for index in range(5)]
        right = password_of("agency-1", "bob")
        return found + [await attempt(address, right) for address in members]

    assert asyncio.run(scenario()) == ["MEMBER_CREDENTIALS_INVALID"] * 5 + ["LOGIN_THROTTLED"] * 2


def test_purchases_racing_over_both_agency_replicas_never_exceed_one_credit_limit(
    replica_network: LocalNetwork,
):
    """Eight purchases at once against a limit that covers four, their billing searches
    spread over both agency processes: exactly four are approved (the member's row lock in
    the one database serialises the two processes), the others are CREDIT_LIMIT_EXCEEDED."""
    network = replica_network
    agencies = replicas_of(network, "agency-1")
    before = [served_calls(network, node) for node in agencies]

    async def scenario() -> list[Any]:
        async with network.admin_channel(agencies[0].address) as channel:
            await settlement_pb2_grpc.SettlementAdminServiceStub(channel).EnrollMember(
                settlement_pb2.EnrollMemberRequest(
                    request_id="enrol-replica-racer",
                    member_id="replica-racer",
                    display_name="Racing Member",
                    password="racer-password",
                    credit_limit=money(4 * 1_200 + 600, CURRENCY),  # four teas fit
                ),
                timeout=10,
            )
        ca = network.ca.read_bytes()
        members = ",".join(node.member_address for node in agencies)
        async with AgencyClient(members, ca) as member:
            await member.login("replica-racer", "racer-password")
            ids = {
                shop: (await member.anonymous_user_id(shop)).anonymous_user_id.value
                for shop in ("shop-1", "shop-2")
            }
        shops = {shop: ShopClient(network.node(shop).member_address, ca) for shop in ids}
        try:
            return await asyncio.gather(
                *(
                    shops[shop].place_order(ids[shop], [("tea", 1)], request_id=f"race-{n}")
                    for n, shop in enumerate(["shop-1", "shop-2"] * 4)
                ),
                return_exceptions=True,
            )
        finally:
            for client in shops.values():
                await client.close()

    outcomes = asyncio.run(scenario())
    approved = [o for o in outcomes if isinstance(o, retail_pb2.ShopOrder)]
    refused = [decode_rpc_error(o) for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(approved) == 4, outcomes
    assert {(r.code, r.reason) for r in refused} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "CREDIT_LIMIT_EXCEEDED")
    }
    assert len(refused) == 4
    assert all(
        served_calls(network, node) > count for node, count in zip(agencies, before, strict=True)
    )


def test_killing_one_replica_of_each_role_loses_no_purchase(replica_network: LocalNetwork):
    network = replica_network
    started = time.monotonic()
    ca = network.ca.read_bytes()
    agency_members = ",".join(node.member_address for node in replicas_of(network, "agency-1"))

    async def scenario() -> Stream:
        stream = Stream()
        ids = {}
        async with AgencyClient(agency_members, ca) as agency:
            await agency.login("alice", password_of("agency-1", "alice"))
            for shop in ("shop-1", "shop-2"):
                issued = await agency.anonymous_user_id(shop)
                ids[shop] = issued.anonymous_user_id.value
        shops = {entity: ShopClient(network.node(entity).member_address, ca) for entity in ids}
        gate = asyncio.Semaphore(CONCURRENT)

        async def one(index: int) -> None:
            entity = ("shop-1", "shop-2")[index % 2]
            async with gate:
                await purchase(shops[entity], ids[entity], stream)

        tasks = [asyncio.create_task(one(index)) for index in range(PURCHASES)]
        while len(stream.completed) < BEFORE_KILL:
            failed = [task for task in tasks if task.done() and task.exception()]
            assert not failed, failed[0].exception()
            await asyncio.sleep(0.05)
        # Both processes of every replicated role have served calls by now.
        for entity in REPLICATED:
            assert all(served_calls(network, node) > 0 for node in replicas_of(network, entity))
        # The first replica of each (the entity's registered address), with purchases in
        # flight through it.
        victims = [replicas_of(network, entity)[0].process for entity in REPLICATED]
        for process in victims:
            process.kill()
        for process in victims:
            await asyncio.to_thread(process.wait)
        stream.completed_before_kill = len(stream.completed)
        try:
            await asyncio.gather(*tasks)
        finally:
            for client in shops.values():
                await client.close()
        return stream

    stream = asyncio.run(scenario())
    elapsed_s = time.monotonic() - started
    assert len(stream.completed) == PURCHASES
    # Most of the stream ran with one replica of each role dead.
    assert PURCHASES - stream.completed_before_kill >= PURCHASES - BEFORE_KILL - CONCURRENT
    assert len(set(stream.completed.values())) == PURCHASES
    for entity in REPLICATED:
        assert replicas_of(network, entity)[0].process.poll() is not None
    report = asyncio.run(reconcile(network_file.load(network.data_dir / "network.json")))
    assert report.orders_checked >= PURCHASES
    assert report.mismatches == []
    # The institution's audit chains, read through the surviving replicas, verify too.
    audit = suretynet("audit", "verify", "--network", str(network.data_dir / "network.json"))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    print(
        json.dumps(
            {
                "purchases_completed": len(stream.completed),
                "completed_after_kill": PURCHASES - stream.completed_before_kill,
                "retried_answers": len(stream.retries),
                "retry_reasons": sorted(set(stream.retries)),
                "stream_s": round(elapsed_s, 1),
            }
        )
    )
