"""network.json names each node's organization's operator; admin commands present it."""

from __future__ import annotations

from pathlib import Path

from nodes.cli import main
from nodes.network.descriptor import load_network, operator_credentials


def test_add_node_records_the_nodes_operator_and_commands_pick_it(tmp_path: Path):
    path = tmp_path / "network.json"
    common = ["network", "add-node", "--network", str(path)]
    assert (
        main(
            [
                *common,
                *("--role", "approval", "--entity", "institution", "--address", "10.0.0.10:7443"),
                *("--ca", "ca.pem", "--admin-cert", "admin-institution.pem"),
                *("--admin-key", "admin-institution.key"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *common,
                *("--role", "retail", "--entity", "shop-9", "--address", "10.0.0.9:7443"),
                *("--operator-cert", "admin-shop-9.pem", "--operator-key", "admin-shop-9.key"),
            ]
        )
        == 0
    )
    assert main([*common, "--role", "retail", "--entity", "shop-8", "--address", "h:1",
                 "--operator-cert", "only-a-cert.pem"]) == 2  # fmt: skip
    network = load_network(path)
    nodes = {node["entity_id"]: node for node in network["nodes"]}
    assert operator_credentials(network, nodes["shop-9"]) == {
        "cert": "admin-shop-9.pem",
        "key": "admin-shop-9.key",
    }
    assert operator_credentials(network, nodes["institution"]) == {
        "cert": "admin-institution.pem",
        "key": "admin-institution.key",
    }
