"""Graceful shutdown: SIGTERM drains a node process, which exits 0 and logs it."""

from __future__ import annotations

import json
import signal

from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork

APPROVAL_ONLY = tuple(spec for spec in DEFAULT_TOPOLOGY if spec.role == "approval")


def test_sigterm_stops_a_node_cleanly(network_factory):
    network: LocalNetwork = network_factory(APPROVAL_ONLY)
    node = network.node("institution")
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(timeout=30) == 0
    lines = [
        json.loads(line)
        for line in (network.data_dir / "logs" / "institution.log").read_text().splitlines()
        if line.startswith("{")
    ]
    messages = [line["msg"] for line in lines]
    assert messages.index("stopping") < messages.index("stopped")
    assert all(line["node"] == "approval/institution" for line in lines)
