"""`suretynet up --netns` resumes its network on the same namespaced IPs and sells again."""

from __future__ import annotations

import pytest
from suretynet.retail.v1 import retail_pb2

from nodes.network.harness import UpProcess, read_manifest, run_purchase
from tests.support import require_netns

pytestmark = pytest.mark.netns


def test_up_with_netns_resumes_on_the_same_addresses(tmp_path):
    require_netns()
    up = UpProcess(tmp_path / "net", netns=True)
    try:
        first = up.start()
        addresses = {node["entity_id"]: node["address"] for node in first["nodes"]}
        assert len({address.split(":")[0] for address in addresses.values()}) == len(addresses)
        assert run_purchase(first, "agency-1", "shop-1").status == retail_pb2.ORDER_STATUS_COMPLETED
        assert up.stop() == 0
        second = up.start()
        assert {node["entity_id"]: node["address"] for node in second["nodes"]} == addresses
        assert read_manifest(up.data_dir)["supervisor"]["pid"] == up.process.pid  # type: ignore[union-attr]
        assert (
            run_purchase(second, "agency-2", "shop-2").status == retail_pb2.ORDER_STATUS_COMPLETED
        )
    finally:
        up.stop()
