"""License keys over their lifetime (seed 001 claims 4-5): nodes rotate their own keys
before expiry under traffic with no failed purchase; a revoked key turns the node
NOT_SERVING with an ERROR that says what to do; a new serial brings it back."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2

from nodes.common.status import RemoteError, decode_rpc_error
from nodes.network.flows.purchase import wait_for_cached_agency
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec, restart_node
from tests.e2e.purchase_support import buy
from tests.support import suretynet

# Keys live 8 s, so each node rotates about every 5 s (two thirds of the lifetime).
KEY_VALIDITY_S = 8.0
APPROVAL = NodeSpec(
    "approval",
    "institution",
    "Credit Guarantee Institution",
    {"license_key_validity_days": KEY_VALIDITY_S / 86_400, "license_key_rotation_grace_s": 300},
)
ENROLLED = ("agency-1", "shop-1", "shop-2")
TOPOLOGY = (
    APPROVAL,
    *(spec for spec in DEFAULT_TOPOLOGY if spec.entity_id in ("verification", *ENROLLED)),
)
ROTATIONS = 2
TRAFFIC_BOUND_S = 120.0


@pytest.fixture(scope="module")
def network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    network = network_factory(TOPOLOGY)
    # shop-2 routes by pushed guarantees: it can sell once agency-1's has reached it.
    asyncio.run(wait_for_cached_agency(network, "shop-2", "agency-1"))
    return network


async def keys_of(network: LocalNetwork, entity_id: str) -> list[approval_pb2.LicenseKeyInfo]:
    async with network.admin_channel(network.node("institution").address) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListLicenseKeys(
            approval_pb2.ListLicenseKeysRequest(entity_id=entity_id), timeout=10
        )
        return list(response.license_keys)


async def health(network: LocalNetwork, entity_id: str) -> int:
    async with network.admin_channel(network.node(entity_id).address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return int(response.status)


async def refused_purchase(network: LocalNetwork, shop: str) -> RemoteError:
    try:
        await buy(network, "agency-1", "alice", shop, [("tea", 1)])
    except grpc.RpcError as error:
        return decode_rpc_error(error)
    raise AssertionError(f"the purchase at {shop} succeeded")


def test_every_node_rotates_its_key_through_expiry_under_traffic_with_no_failed_purchase(
    network: LocalNetwork,
):
    async def traffic() -> tuple[int, dict[str, list[approval_pb2.LicenseKeyInfo]]]:
        purchases = 0
        deadline = time.monotonic() + TRAFFIC_BOUND_S
        while True:
            for shop in ("shop-1", "shop-2"):
                bought = await buy(network, "agency-1", "alice", shop, [("tea", 1)])
                assert bought.order.status == retail_pb2.ORDER_STATUS_COMPLETED
                purchases += 1
            keys = {entity: await keys_of(network, entity) for entity in ENROLLED}
            if all(len(issued) > ROTATIONS for issued in keys.values()):
                return purchases, keys
            assert time.monotonic() < deadline, {e: len(k) for e, k in keys.items()}

    purchases, keys = asyncio.run(traffic())
    assert purchases >= 2
    for entity, issued in keys.items():
        newest = max(issued, key=lambda key: key.issued_at.ToDatetime())
        # The first key lived past its own expiry only as a superseded one: every key the
        # node held was rotated before it expired.
        assert all(key.superseded_by_license_key_id for key in issued if key != newest), entity
        # Approval keeps "last seen" of each key current (claims 4-5): every key rotated out
        # was seen, at the latest when it was presented to rotate it.
        assert all(
            key.last_seen_at.ToDatetime() >= key.issued_at.ToDatetime()
            for key in issued
            if key != newest
        ), entity
    log = (network.data_dir / "logs" / "shop-1.log").read_text()
    assert log.count('"msg":"license key rotated"') >= ROTATIONS
    assert '"level":"ERROR"' not in log


def test_a_revoked_node_reports_not_serving_and_comes_back_with_a_new_serial(
    network: LocalNetwork,
):
    network_json = str(network.data_dir / "network.json")
    current = max(
        asyncio.run(keys_of(network, "shop-1")), key=lambda key: key.issued_at.ToDatetime()
    )
    revoked = suretynet(
        "approval",
        "--network",
        network_json,
        "revoke-key",
        "--key-id",
        current.license_key_id,
        "--reason",
        "audit",
        "--request-id",
        "revoke-shop-1",
    )
    assert revoked.returncode == 0, revoked.stderr
    # The node learns it on its next call to approval: make one now.
    outcome = suretynet("node", "change-info", "shop-1", "--network", network_json)
    assert outcome.returncode == 1 and "REFUSED" in outcome.stdout
    assert "LICENSE_KEY_REVOKED" in outcome.stdout
    assert asyncio.run(health(network, "shop-1")) == health_pb2.HealthCheckResponse.NOT_SERVING
    errors = [
        json.loads(line)
        for line in (network.data_dir / "logs" / "shop-1.log").read_text().splitlines()
        if '"level":"ERROR"' in line and "license key unusable" in line
    ]
    assert errors and "new program serial" in errors[-1]["msg"]
    # shop-1 asks approval's directory for the member's agency with its key (step 4),
    # before anything is billed: the member is told why, not "unavailable, retry".
    refused = asyncio.run(refused_purchase(network, "shop-1"))
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "LICENSE_KEY_REVOKED",
    ), refused.message

    serial = suretynet(
        "approval",
        "--network",
        network_json,
        "issue-serial",
        "--role",
        "retail",
        "--request-id",
        "serial-shop-1-back",
    )
    assert serial.returncode == 0, serial.stderr
    new_serial = json.loads(serial.stdout)["program_serial"]["serial"]
    config = network.node("shop-1").directory / "node.toml"
    config.write_text(
        re.sub(
            r'^program_serial = ".*"$',
            f'program_serial = "{new_serial}"',
            config.read_text(),
            flags=re.M,
        )
    )
    asyncio.run(restart_node(network, "shop-1"))
    assert asyncio.run(health(network, "shop-1")) == health_pb2.HealthCheckResponse.SERVING
    keys = asyncio.run(keys_of(network, "shop-1"))
    assert any(key.state == approval_pb2.LICENSE_KEY_STATE_ACTIVE for key in keys)
    bought = asyncio.run(buy(network, "agency-1", "alice", "shop-1", [("mug", 1)]))
    assert bought.order.status == retail_pb2.ORDER_STATUS_COMPLETED
