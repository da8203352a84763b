"""Claims 8-9 with replicas (issue 11): under a lab, every replica of an entity runs in its
own namespace with its own IP, all of them over the entity's one PostgreSQL database, which
listens on the lab's bridge.

Approval's registry holds every replica's address: each replica's calls are accepted, and a
call with the entity's certificate from any other address is still refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2

from nodes.member.client import AgencyClient, ShopClient
from nodes.network.local import LocalNetwork, RunningNode, start_network
from nodes.network.netns import NetnsLab
from tests.e2e.purchase_support import password_of
from tests.netns.conftest import TOPOLOGY, Probe, make_probe
from tests.netns.test_identity import SHOP_TO_AGENCY, node_files, passed_identity
from tests.support import require_postgresql

pytestmark = pytest.mark.netns

AGENCY_TO_SHOP = "/suretynet.retail.v1.AnonymousIdService/DeliverAnonymousUserId"
# The institution, one agency and one shop: enough for every identity check of a replica.
REPLICA_TOPOLOGY = tuple(
    spec
    for spec in TOPOLOGY
    if spec.entity_id in ("institution", "verification", "agency-1", "shop-1")
)


@pytest.fixture(scope="module")
def replica_lab(lab: NetnsLab) -> NetnsLab:
    """The netns lab (tests/netns/conftest.py), once PostgreSQL is there for replicas."""
    require_postgresql()
    return lab


@pytest.fixture(scope="module")
def replica_network(
    replica_lab: NetnsLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNetwork]:
    from nodes.network.postgres import throwaway_directory

    network = asyncio.run(
        start_network(
            # Under a directory PostgreSQL's own user may traverse (it runs the cluster).
            throwaway_directory() / "sn",
            REPLICA_TOPOLOGY,
            lab=replica_lab,
            database="postgresql",
            replicas=2,
        )
    )
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def probe_from(replica_lab: NetnsLab, replica_network: LocalNetwork) -> Probe:
    return make_probe(replica_lab, replica_network.ca)


def replicas_of(network: LocalNetwork, entity_id: str) -> list[RunningNode]:
    return [node for node in network.nodes if node.spec.entity_id == entity_id]


def test_each_replica_has_its_own_host_and_the_registry_lists_them_all(
    replica_network: LocalNetwork, replica_lab: NetnsLab
):
    agencies = replicas_of(replica_network, "agency-1")
    hosts = [node.address.rsplit(":", 1)[0] for node in agencies]
    assert hosts == [replica_lab.hosts["agency-1"], replica_lab.hosts["agency-1-replica-2"]]
    assert len(set(hosts)) == 2

    async def entry() -> approval_pb2.RegisteredEntity:
        approval = replica_network.node("institution")
        async with replica_network.admin_channel(approval.address) as channel:
            entities = (
                await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                    approval_pb2.ListEntitiesRequest(), timeout=10
                )
            ).entities
        return next(entity for entity in entities if entity.entity_id == "agency-1")

    registered = asyncio.run(entry())
    assert list(registered.replica_addresses) == [node.address for node in agencies]


def test_calls_from_every_replica_are_accepted_and_from_elsewhere_refused(
    replica_network: LocalNetwork, probe_from: Probe
):
    """agency-1's certificate from either replica's namespace passes shop-1's correlation
    (claim 9); from the intruder's it is ADDRESS_MISMATCH. The mirror at the agency: the
    shop's certificate is accepted by each agency replica, from the shop's own host only."""
    shop = replica_network.node("shop-1").address
    agency_files = node_files(replica_network, "agency-1")
    shop_files = node_files(replica_network, "shop-1")
    for host in ("agency-1", "agency-1-replica-2"):
        result = probe_from(host, shop, AGENCY_TO_SHOP, {}, **agency_files)
        assert passed_identity(result), (host, result)
    stolen = probe_from("intruder", shop, AGENCY_TO_SHOP, {}, **agency_files)
    assert (stolen["code"], stolen["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")
    for agency in replicas_of(replica_network, "agency-1"):
        order = {"order_number": "ORD-REPLICA-1"}
        accepted = probe_from("shop-1", agency.address, SHOP_TO_AGENCY, order, **shop_files)
        assert passed_identity(accepted), accepted
        refused = probe_from("intruder", agency.address, SHOP_TO_AGENCY, order, **shop_files)
        assert (refused["code"], refused["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")


def test_both_agency_replicas_deliver_anonymous_ids_to_the_shop(replica_network: LocalNetwork):
    """Claim 1 from each replica: a member spread over both agency replicas gets IDs for a
    directory shop; each replica delivered some to shop-1, which accepted every one."""
    members = ",".join(node.member_address for node in replicas_of(replica_network, "agency-1"))

    async def issue() -> None:
        async with AgencyClient(members, replica_network.ca.read_bytes()) as agency:
            await agency.login("alice", password_of("agency-1", "alice"))
            for _ in range(6):
                await agency.anonymous_user_id("shop-1")

    asyncio.run(issue())
    for node in replicas_of(replica_network, "agency-1"):
        log = (replica_network.data_dir / "logs" / f"{node.log_name}.log").read_text()
        assert "IssueAnonymousUserId" in log, f"{node.log_name} served no call"


def node_calls(network: LocalNetwork, node: RunningNode) -> list[dict[str, str]]:
    """The inter-node RPCs a replica served: caller identity and the peer IP it came from."""
    log = network.data_dir / "logs" / f"{node.log_name}.log"
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [
        entry
        for entry in entries
        if entry.get("msg") == "rpc"
        and str(entry.get("caller", "")).startswith("suretynet://")
        and "/admin/" not in str(entry.get("caller", ""))
    ]


def test_purchases_cross_every_replica_from_its_own_ip(
    replica_network: LocalNetwork, replica_lab: NetnsLab
):
    """Purchases through shop-1 cross every replica of each role, each calling from its own
    IP: approval replicas are correlated with the approval_address list, agency replicas
    with the registry's set; every purchase completes."""
    members = ",".join(node.member_address for node in replicas_of(replica_network, "agency-1"))
    ca = replica_network.ca.read_bytes()

    async def purchases() -> list[int]:
        async with AgencyClient(members, ca) as agency:
            await agency.login("alice", password_of("agency-1", "alice"))
            value = (await agency.anonymous_user_id("shop-1")).anonymous_user_id.value
        shop = replica_network.node("shop-1").member_address
        async with ShopClient(shop, ca) as client:
            return [(await client.place_order(value, [("tea", 1)])).status for _ in range(8)]

    assert asyncio.run(purchases()) == [retail_pb2.ORDER_STATUS_COMPLETED] * 8
    callers_at_verification = set()
    for entity in ("institution", "verification", "agency-1"):
        for node in replicas_of(replica_network, entity):
            served = node_calls(replica_network, node)
            assert served, f"{node.log_name} served no call from another node"
            if entity == "verification":
                callers_at_verification |= {(e["caller"], e["peer"]) for e in served}
    # Both agency replicas filed reports from their own IPs, and verification took them.
    agency_ips = {
        replica_lab.hosts[node.log_name] for node in replicas_of(replica_network, "agency-1")
    }
    assert {
        peer for caller, peer in callers_at_verification if caller.endswith("/agency-1")
    } == agency_ips
