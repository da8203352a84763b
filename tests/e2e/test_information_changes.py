"""Nodes announce their own information (seed 001 claims 6-7): the operator edits the
config, restarts the node, and the registry follows, so purchases keep working."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

import grpc
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc

from nodes.common.status import decode_rpc_error
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork, NodeSpec, restart_node
from tests.e2e.purchase_support import buy
from tests.support import suretynet

TOPOLOGY = (
    *(
        spec
        for spec in DEFAULT_TOPOLOGY
        if spec.entity_id in ("institution", "verification", "agency-1", "shop-1", "shop-2")
    ),
    NodeSpec(
        "retail",
        "shop-3",
        "Shop Three",
        {"discovery": "cache", "cache_refresh_interval_s": 1, "cache_max_staleness_s": 60},
        True,
    ),
)
NEW_PREFIX = "4999"
NEW_NAME = "Shop One, Renamed"
PUSH_BOUND_S = 60.0


@pytest.fixture(scope="module")
def network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    return network_factory(TOPOLOGY)


def edit(network: LocalNetwork, entity_id: str, pattern: str, replacement: str) -> None:
    path = network.node(entity_id).directory / "node.toml"
    text, count = re.subn(pattern, replacement, path.read_text(), flags=re.M)
    assert count == 1, f"{pattern} not in {path}"
    path.write_text(text)


def announcement(network: LocalNetwork, entity_id: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(
        (network.node(entity_id).directory / "information.json").read_text()
    )
    return result


async def registered(network: LocalNetwork, entity_id: str) -> approval_pb2.RegisteredEntity:
    async with network.admin_channel(network.node("institution").address) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).GetEntity(
            approval_pb2.GetEntityRequest(entity_id=entity_id), timeout=10
        )
        return response.entity


async def shop_knows_prefix(network: LocalNetwork, shop: str, prefix: str) -> None:
    """Waits until a push or cache shop's guarantee database has agency-1 under ``prefix``."""
    deadline = time.monotonic() + PUSH_BOUND_S
    async with network.admin_channel(network.node(shop).address) as channel:
        admin = retail_pb2_grpc.RetailAdminServiceStub(channel)
        while True:
            cache = await admin.ListGuaranteeCache(
                retail_pb2.ListGuaranteeCacheRequest(), timeout=10
            )
            if any(
                g.settlement_agency_id == "agency-1" and g.routing_prefix == prefix
                for g in cache.guarantees
            ):
                return
            assert time.monotonic() < deadline, f"{shop} never saw agency-1 under {prefix}"
            await asyncio.sleep(0.1)


def test_an_unchanged_node_finds_the_registry_matching_on_restart(network: LocalNetwork):
    asyncio.run(restart_node(network, "shop-2"))
    assert announcement(network, "shop-2")["outcome"] == "MATCHED"


def test_a_renamed_shop_and_a_new_routing_prefix_reach_the_registry_and_both_shops_sell(
    network: LocalNetwork,
):
    edit(network, "shop-1", r"^name = .*$", f'name = "{NEW_NAME}"')
    edit(network, "agency-1", r"^routing_prefix = .*$", f'routing_prefix = "{NEW_PREFIX}"')

    async def scenario() -> None:
        await restart_node(network, "agency-1")
        await restart_node(network, "shop-1")
        assert announcement(network, "agency-1")["outcome"] == "CHANGED"
        assert announcement(network, "agency-1")["fields"] == ["routing_prefix"]
        assert announcement(network, "shop-1")["fields"] == ["display_name"]
        assert (await registered(network, "shop-1")).display_name == NEW_NAME
        assert (await registered(network, "agency-1")).routing_prefix == NEW_PREFIX
        directory = await buy(network, "agency-1", "alice", "shop-1", [("tea", 1)])
        assert directory.order.status == retail_pb2.ORDER_STATUS_COMPLETED
        assert directory.anonymous_user_id.startswith(NEW_PREFIX)
        await shop_knows_prefix(network, "shop-2", NEW_PREFIX)
        pushed = await buy(network, "agency-1", "alice", "shop-2", [("mug", 1)])
        assert pushed.order.status == retail_pb2.ORDER_STATUS_COMPLETED
        await shop_knows_prefix(network, "shop-3", NEW_PREFIX)
        cached = await buy(network, "agency-1", "alice", "shop-3", [("kettle", 1)])
        assert cached.order.status == retail_pb2.ORDER_STATUS_COMPLETED

    asyncio.run(scenario())
    log = (network.data_dir / "logs" / "shop-1.log").read_text()
    assert "installation information changed: registry updated" in log


def test_a_registry_that_differs_is_named_in_approvals_log_and_change_info_repairs_it(
    network: LocalNetwork,
):
    network_json = str(network.data_dir / "network.json")
    renamed = suretynet(
        "approval",
        "--network",
        network_json,
        "change-info",
        "--entity",
        "shop-1",
        "--name",
        "Other Name",
        "--request-id",
        "admin-rename-shop-1",
    )
    assert renamed.returncode == 0, renamed.stderr
    assert json.loads(renamed.stdout)["entity"]["display_name"] == "Other Name"

    async def refused_purchase() -> str:
        with pytest.raises(grpc.RpcError) as refused:
            await buy(network, "agency-1", "alice", "shop-1", [("tea", 1)])
        return decode_rpc_error(refused.value).reason

    assert asyncio.run(refused_purchase()) == "GUARANTEE_MISMATCH"
    approval_log = (network.data_dir / "logs" / "institution.log").read_text().splitlines()
    mismatch = [
        json.loads(line)
        for line in approval_log
        if "retail entity identification differs from the registry" in line
    ]
    assert mismatch and mismatch[-1]["mismatched_fields"] == ["display_name"]
    assert mismatch[-1]["presented"] == {"display_name": NEW_NAME}
    assert mismatch[-1]["level"] == "WARNING"

    result = suretynet("node", "change-info", "shop-1", "--network", network_json)
    assert result.returncode == 0, result.stderr
    assert "shop-1: CHANGED (fields: display_name)" in result.stdout
    again = asyncio.run(buy(network, "agency-1", "alice", "shop-1", [("tea", 1)]))
    assert again.order.status == retail_pb2.ORDER_STATUS_COMPLETED


def test_change_info_refusals_are_one_clear_line(network: LocalNetwork):
    network_json = str(network.data_dir / "network.json")
    verification = suretynet("node", "change-info", "verification", "--network", network_json)
    assert verification.returncode == 2
    assert "has no information to announce" in verification.stderr
    prefix = suretynet(
        "approval",
        "--network",
        network_json,
        "change-info",
        "--entity",
        "shop-2",
        "--routing-prefix",
        "1234",
        "--request-id",
        "bad-prefix",
    )
    assert prefix.returncode == 2 and "is a retail entity, not an agency" in prefix.stderr
    nothing = suretynet(
        "approval",
        "--network",
        network_json,
        "change-info",
        "--entity",
        "shop-2",
        "--request-id",
        "nothing",
    )
    assert nothing.returncode == 2 and "give at least one of" in nothing.stderr
    unknown = suretynet(
        "approval",
        "--network",
        network_json,
        "change-info",
        "--entity",
        "shop-99",
        "--name",
        "X",
        "--request-id",
        "unknown",
    )
    assert unknown.returncode == 1 and "ENTITY_NOT_FOUND" in unknown.stderr
