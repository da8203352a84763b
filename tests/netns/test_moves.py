"""A node that moves to another host (a new IP) under real address correlation (claims 6-9).

Its own announcement from the new IP is refused (it does not come from its registered
address, so claims 8-9 stay sound) and says what to do; once the institution records the
move, the node finds the registry matching and sells from its new address.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from suretynet.retail.v1 import retail_pb2

from nodes.common import pki
from nodes.network.local import LocalNetwork, restart_node, stop_node
from nodes.network.netns import NetnsLab
from tests.e2e.purchase_support import buy
from tests.netns.conftest import IDENTITY_CACHE_TTL_S, Probe
from tests.netns.test_identity import ORDER, SHOP_TO_AGENCY, passed_identity, wait_for
from tests.support import suretynet

pytestmark = pytest.mark.netns


def test_a_moved_node_is_refused_until_the_institution_records_the_move(
    netns_network: LocalNetwork, lab: NetnsLab, probe: Probe
):
    network_json = str(netns_network.data_dir / "network.json")
    shop = netns_network.node("shop-2")
    old_ip = lab.hosts["shop-2"]
    stop_node(shop)
    new_ip = lab.move_host("shop-2")
    pki_dir = netns_network.data_dir / "pki"
    pki.issue_certificate(
        pki_dir, role="retail", entity_id="shop-2", ip_addresses=[new_ip], out_directory=pki_dir
    )
    config = shop.directory / "node.toml"
    config.write_text(re.sub(re.escape(old_ip) + r":", f"{new_ip}:", config.read_text()))
    asyncio.run(restart_node(netns_network, "shop-2"))
    assert shop.address.startswith(f"{new_ip}:")

    announced = json.loads((shop.directory / "information.json").read_text())
    # Refused at its first call to approval, from an address approval does not know it by.
    assert announced["outcome"] == "REFUSED"
    assert "ADDRESS_MISMATCH" in announced["detail"]
    assert "suretynet approval change-info" in announced["detail"]

    moved = suretynet(
        "approval",
        "--network",
        network_json,
        "change-info",
        "--entity",
        "shop-2",
        "--address",
        shop.address,
        "--request-id",
        "move-shop-2",
    )
    assert moved.returncode == 0, moved.stderr
    # Approval's own correlation cache follows within its TTL; ask until it has.
    deadline = time.monotonic() + IDENTITY_CACHE_TTL_S + 30
    while True:
        outcome = suretynet("node", "change-info", "shop-2", "--network", network_json)
        if outcome.returncode == 0:
            break
        assert time.monotonic() < deadline, outcome.stdout + outcome.stderr
    assert "shop-2: MATCHED" in outcome.stdout

    # The agency correlates shop-2's calls from its new IP once its cache (TTL) follows.
    files = {"cert": shop.cert, "key": shop.key}
    agency = netns_network.node("agency-1").address
    wait_for(
        lambda: passed_identity(probe("shop-2", agency, SHOP_TO_AGENCY, ORDER, **files)),
        timeout_s=IDENTITY_CACHE_TTL_S + 30,
        what="the agency accepting shop-2 from its new address",
    )
    bought = asyncio.run(buy(netns_network, "agency-1", "alice", "shop-2", [("tea", 1)]))
    assert bought.order.status == retail_pb2.ORDER_STATUS_COMPLETED
