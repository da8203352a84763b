"""Server identity across hosts (seed 001 claims 8-9): one namespace and one IP per node.

Every call here really leaves from the namespace named first: that is the address the
receiving node sees in ``context.peer()`` and correlates with approval's registry.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
import time
from pathlib import Path

import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

from nodes.common import pki
from nodes.common.node import read_license_key
from nodes.network.local import LocalNetwork
from nodes.network.netns import NetnsLab
from tests.netns.conftest import IDENTITY_CACHE_TTL_S, Probe

pytestmark = pytest.mark.netns

IDENTITY_REASONS = {
    "ADDRESS_MISMATCH",
    "ADDRESS_UNKNOWN",
    "ROLE_NOT_ALLOWED",
    "CLIENT_CERTIFICATE_REQUIRED",
    "CERTIFICATE_IDENTITY_INVALID",
}
# A settlement RPC that shops may call; what it answers past the identity layer does not
# matter here, only that the identity layer let the call through or refused it.
SHOP_TO_AGENCY = "/suretynet.settlement.v1.BillingService/GetBillingStatus"
ORDER = {"order_number": "ORD-NETNS-1"}


def node_files(network: LocalNetwork, entity_id: str) -> dict[str, Path]:
    node = network.node(entity_id)
    return {"cert": node.cert, "key": node.key}


def passed_identity(result: dict[str, object]) -> bool:
    """The call got past TLS and the identity checks (whatever the RPC itself answered)."""
    return result["code"] != "UNAVAILABLE" and result.get("reason") not in IDENTITY_REASONS


def wait_for(condition, *, timeout_s: float, what: str) -> float:
    """Polls ``condition`` until it holds; returns the seconds it took. Fails at the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
    raise AssertionError(f"{what} did not happen within {timeout_s}s")


def test_every_node_registered_from_its_own_address(netns_network: LocalNetwork, lab: NetnsLab):
    """Registration checks the address against the caller's: each node is at its own IP."""

    async def entities():
        approval = netns_network.node("institution")
        async with netns_network.admin_channel(approval.address) as channel:
            return (
                await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListEntities(
                    approval_pb2.ListEntitiesRequest(), timeout=10
                )
            ).entities

    registered = {
        entity.entity_id: entity.address.rsplit(":", 1)[0] for entity in asyncio.run(entities())
    }
    assert registered == {entity: lab.hosts[entity] for entity in ("agency-1", "shop-1", "shop-2")}
    assert len(set(registered.values())) == 3


def test_calls_between_nodes_in_different_namespaces_are_accepted(
    netns_network: LocalNetwork, probe: Probe
):
    """shop-1 calls agency-1 from shop-1's IP; agency-1 asks approval (claim 8) and accepts."""
    agency = netns_network.node("agency-1").address
    result = probe("shop-1", agency, SHOP_TO_AGENCY, ORDER, **node_files(netns_network, "shop-1"))
    assert passed_identity(result), result


def test_a_stolen_certificate_used_from_another_address_is_refused(
    netns_network: LocalNetwork, probe: Probe, lab: NetnsLab
):
    """shop-1's real certificate and key, but from the intruder's IP: ADDRESS_MISMATCH."""
    files = node_files(netns_network, "shop-1")
    agency = netns_network.node("agency-1").address
    approval = netns_network.node("institution").address
    at_agency = probe("intruder", agency, SHOP_TO_AGENCY, ORDER, **files)
    at_approval = probe(
        "intruder",
        approval,
        "/suretynet.approval.v1.DirectoryService/GetRelatedSettlementAgencyInformation",
        {"settlement_agency_id": "agency-1"},
        **files,
    )
    assert (at_agency["code"], at_agency["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")
    assert (at_approval["code"], at_approval["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")
    log = (netns_network.data_dir / "logs" / "agency-1.log").read_text()
    mismatch = [line for line in log.splitlines() if "address mismatch" in line]
    assert mismatch, "the refusal is logged"
    assert lab.hosts["intruder"] in mismatch[-1] and lab.hosts["shop-1"] in mismatch[-1]


def test_a_settlement_agency_impersonated_from_a_shops_address_is_refused(
    netns_network: LocalNetwork, probe: Probe
):
    """Claim 9, the mirror: agency-1's certificate from shop-2's IP, calling shop-1."""
    shop = netns_network.node("shop-1").address
    result = probe(
        "shop-2",
        shop,
        "/suretynet.retail.v1.AnonymousIdService/DeliverAnonymousUserId",
        {},
        **node_files(netns_network, "agency-1"),
    )
    assert (result["code"], result["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")


def test_a_certificate_of_the_wrong_role_is_refused(netns_network: LocalNetwork, probe: Probe):
    """shop-1 from its own address may not call the institution's admin console."""
    result = probe(
        "shop-1",
        netns_network.node("institution").address,
        "/suretynet.approval.v1.ApprovalAdminService/ListEntities",
        {},
        **node_files(netns_network, "shop-1"),
    )
    assert (result["code"], result["reason"]) == ("PERMISSION_DENIED", "ROLE_NOT_ALLOWED")


def _counts(network: LocalNetwork) -> dict[str, int]:
    """Rows in every table of every node's database (read-only, from the test's side)."""
    counts: dict[str, int] = {}
    for node in network.nodes:
        with sqlite3.connect(f"file:{node.directory / 'node.db'}?mode=ro", uri=True) as db:
            for (table,) in db.execute("select name from sqlite_master where type = 'table'"):
                counts[f"{node.spec.entity_id}.{table}"] = db.execute(
                    f'select count(*) from "{table}"'
                ).fetchone()[0]
    return counts


def test_tls_failures_are_refused_with_no_side_effect_anywhere(
    netns_network: LocalNetwork, probe: Probe, tmp_path: Path
):
    """No certificate, another CA, expired, not yet valid, wrong-role URI SAN, plaintext."""
    pki_dir = netns_network.data_dir / "pki"
    now = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "bad"
    expired = pki.issue_certificate(
        pki_dir,
        role="admin",
        entity_id="expired",
        ip_addresses=["127.0.0.1"],
        out_directory=out,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    future = pki.issue_certificate(
        pki_dir,
        role="admin",
        entity_id="future",
        ip_addresses=["127.0.0.1"],
        out_directory=out,
        not_before=now + datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=30),
    )
    wrong_role = pki.issue_certificate(
        pki_dir,
        role="retail",
        entity_id="operator",
        ip_addresses=["127.0.0.1"],
        out_directory=out,
    )
    other_ca_dir = tmp_path / "other-ca"
    pki.init_ca(other_ca_dir)
    other_ca = pki.issue_certificate(
        other_ca_dir,
        role="admin",
        entity_id="operator",
        ip_addresses=["127.0.0.1"],
        out_directory=other_ca_dir,
    )
    approval = netns_network.node("institution").address
    mutation = "/suretynet.approval.v1.ApprovalAdminService/IssueProgramSerial"
    request = {"request_id": "must-not-happen", "role": "ROLE_RETAIL", "note": "attack"}
    before = _counts(netns_network)
    results = {
        "no client certificate": probe("intruder", approval, mutation, request),
        "another CA": probe(
            "intruder", approval, mutation, request, cert=other_ca.cert_path, key=other_ca.key_path
        ),
        "expired": probe(
            "intruder", approval, mutation, request, cert=expired.cert_path, key=expired.key_path
        ),
        "not yet valid": probe(
            "intruder", approval, mutation, request, cert=future.cert_path, key=future.key_path
        ),
        "wrong role": probe(
            "intruder",
            approval,
            mutation,
            request,
            cert=wrong_role.cert_path,
            key=wrong_role.key_path,
        ),
        "plaintext": probe("intruder", approval, mutation, request, plaintext=True),
    }
    after = _counts(netns_network)
    handshake_failures = {name: r["code"] for name, r in results.items() if name != "wrong role"}
    assert handshake_failures == dict.fromkeys(handshake_failures, "UNAVAILABLE"), results
    assert (results["wrong role"]["code"], results["wrong role"]["reason"]) == (
        "PERMISSION_DENIED",
        "ROLE_NOT_ALLOWED",
    )
    assert after == before


def test_an_address_change_moves_the_accepted_address_within_the_cache_ttl(
    netns_network: LocalNetwork, probe: Probe, lab: NetnsLab
):
    """Claim 6 then claim 8: after shop-1 moves to the intruder's IP, the old IP is refused.

    The switch-over is bounded by the identity cache TTL; the test waits on the condition.
    """
    files = node_files(netns_network, "shop-1")
    agency = netns_network.node("agency-1").address
    shop = netns_network.node("shop-1")
    port = shop.address.rsplit(":", 1)[1]

    async def move(ip: str, request_id: str) -> None:
        approval = netns_network.node("institution").address
        async with netns_network.admin_channel(approval) as channel:
            await approval_pb2_grpc.EnrollmentServiceStub(channel).ChangeRetailEntityInformation(
                approval_pb2.ChangeRetailEntityInformationRequest(
                    request_id=request_id,
                    entity_id="shop-1",
                    change=approval_pb2.RetailEntityInformationChange(address=f"{ip}:{port}"),
                ),
                timeout=10,
            )

    def from_host(host: str) -> dict[str, object]:
        return probe(host, agency, SHOP_TO_AGENCY, ORDER, **files)

    assert passed_identity(from_host("shop-1"))
    asyncio.run(move(lab.hosts["intruder"], "move-shop-1-away"))
    try:
        elapsed = wait_for(
            lambda: passed_identity(from_host("intruder")),
            timeout_s=IDENTITY_CACHE_TTL_S + 30,
            what="the new address being accepted",
        )
        old = from_host("shop-1")
        assert (old["code"], old["reason"]) == ("PERMISSION_DENIED", "ADDRESS_MISMATCH")
        assert elapsed <= IDENTITY_CACHE_TTL_S + 30
    finally:
        asyncio.run(move(lab.hosts["shop-1"], "move-shop-1-back"))
        wait_for(
            lambda: passed_identity(from_host("shop-1")),
            timeout_s=IDENTITY_CACHE_TTL_S + 30,
            what="the move back",
        )


def test_a_shop_can_neither_read_nor_cancel_another_shops_order(
    netns_network: LocalNetwork, probe: Probe
):
    """shop-2, from its own registered address, asks about and cancels shop-1's real order.

    Identity passes (it really is shop-2, where shop-2 is registered): the refusal comes
    from the object-level check, and the order stays billed and uncancelled.
    """
    from nodes.member.client import AgencyClient, ShopClient

    async def buy() -> str:
        ca_pem = netns_network.ca.read_bytes()
        agency = netns_network.node("agency-1").member_address
        shop = netns_network.node("shop-1").member_address
        async with AgencyClient(agency, ca_pem) as member:
            await member.login("alice", "alice-demo-password")
            anonymous = await member.anonymous_user_id("shop-1")
        async with ShopClient(shop, ca_pem) as shopper:
            order = await shopper.place_order(anonymous.anonymous_user_id.value, [("tea", 1)])
        return str(order.order_number)

    order_number = asyncio.run(buy())
    shop_2 = node_files(netns_network, "shop-2")
    agency = netns_network.node("agency-1").address
    read = probe("shop-2", agency, SHOP_TO_AGENCY, {"order_number": order_number}, **shop_2)
    cancel = probe(
        "shop-2",
        agency,
        "/suretynet.settlement.v1.BillingService/NotifyCancelRequest",
        {
            "request_id": "steal-cancel-1",
            "cancel_request_notice": {
                "cancel_request_id": "steal-1",
                "order_number": order_number,
                "retail_entity_id": "shop-1",
                "settlement_agency_id": "agency-1",
                "requested_by": "CANCEL_REQUESTER_RETAIL_ENTITY",
                "procedure": "CANCEL_PROCEDURE_NOTIFIED",
            },
            "retail_entity": {"retail_entity_id": "shop-1"},
        },
        **shop_2,
    )
    # shop-2's own license key (opened from its database by the test), so that approval's
    # refusal is about ownership, not about a missing key.
    database = netns_network.node("shop-2").directory / "node.db"
    license_key = read_license_key(database, "shop-2")
    record = probe(
        "shop-2",
        netns_network.node("institution").address,
        "/suretynet.approval.v1.TransactionService/GetTransactionRecord",
        {"order_number": order_number},
        **shop_2,
        metadata={"x-suretynet-license-key": license_key},
    )
    owner = probe(
        "shop-1",
        agency,
        SHOP_TO_AGENCY,
        {"order_number": order_number},
        **node_files(netns_network, "shop-1"),
    )
    assert (read["code"], read["reason"]) == ("PERMISSION_DENIED", "NOT_OWNER"), read
    assert (cancel["code"], cancel["reason"]) == ("PERMISSION_DENIED", "NOT_OWNER"), cancel
    assert (record["code"], record["reason"]) == ("PERMISSION_DENIED", "NOT_OWNER"), record
    assert owner["code"] == "OK", owner
    assert "CANCEL" not in json.dumps(owner["response"]).upper()
