"""The network descriptor (``network.json``): where every node is, and the operator's TLS files.

``suretynet up`` writes it; in a deployment without ``up`` the operator writes and extends
it (``suretynet network add-node``). Every CLI reads it through ``load_network``, which
refuses a malformed file with a message naming what is wrong. The format
(docs/OPERATIONS.md, "The network descriptor"):

    {"ca": PATH, "admin": {"cert": PATH, "key": PATH},       (the institution's operator)
     "nodes": [{"role": ROLE, "entity_id": ID, "address": "HOST:PORT",
                "member_address": "HOST:PORT" or "", ...optional: cert, key, database,
                config, log, pid, operator: {"cert": PATH, "key": PATH}}],
     "supervisor": {"pid": PID}   (only while `suretynet up` runs it)}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nodes.common.identity import NODE_ROLES


def load_network(path: Path | str) -> dict[str, Any]:
    """Reads and checks a network descriptor; raises ValueError naming what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ValueError(
            f"{path}: no such network descriptor (run 'suretynet up' or "
            "'suretynet network add-node' to write one)"
        ) from error
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable network descriptor: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a network descriptor is a JSON object")
    if not isinstance(data.get("ca"), str):
        raise ValueError(f"{path}: 'ca' (the network CA's PEM file) is missing")
    admin = data.get("admin")
    if not isinstance(admin, dict) or not all(
        isinstance(admin.get(key), str) for key in ("cert", "key")
    ):
        raise ValueError(f"{path}: 'admin' needs 'cert' and 'key' (the operator's PEM files)")
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError(f"{path}: 'nodes' (a list) is missing")
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise ValueError(f"{path}: nodes[{index}] is not an object")
        for key in ("role", "entity_id", "address"):
            if not isinstance(node.get(key), str) or not node[key]:
                raise ValueError(f"{path}: nodes[{index}].{key} is missing")
        if node["role"] not in NODE_ROLES:
            raise ValueError(
                f"{path}: nodes[{index}].role {node['role']!r} is not one of "
                f"{', '.join(sorted(NODE_ROLES))}"
            )
    return data


def operator_credentials(network: dict[str, Any], node: dict[str, Any]) -> dict[str, str]:
    """The operator certificate and key to present at ``node``: its own organization's
    (``operator``), since a node accepts no other; the institution's (``admin``) for
    approval and verification, and for entries that name none."""
    operator = node.get("operator")
    if isinstance(operator, dict) and operator.get("cert") and operator.get("key"):
        return {"cert": str(operator["cert"]), "key": str(operator["key"])}
    return {"cert": str(network["admin"]["cert"]), "key": str(network["admin"]["key"])}


def find_node(network: dict[str, Any], entity_id: str, *, path: str = "network.json") -> Any:
    """The descriptor's entry for ``entity_id``; ValueError listing the known ones if none."""
    for node in network["nodes"]:
        if node["entity_id"] == entity_id:
            return node
    known = ", ".join(node["entity_id"] for node in network["nodes"]) or "none"
    raise ValueError(f"{path} lists no node {entity_id!r} (it lists: {known})")


def find_role(network: dict[str, Any], role: str, *, path: str = "network.json") -> Any:
    """The first node of ``role`` (approval, verification), or ValueError."""
    for node in network["nodes"]:
        if node["role"] == role:
            return node
    raise ValueError(f"{path} lists no {role} node")


def role_address(network: dict[str, Any], role: str, *, path: str = "network.json") -> str:
    """Every replica's address of the first node of ``role`` (one address for one
    process), comma-separated: a channel over them reaches whichever replica is up."""
    first = find_role(network, role, path=path)
    return ",".join(
        str(node["address"])
        for node in network["nodes"]
        if node["role"] == role and node["entity_id"] == first["entity_id"]
    )


def write_network(path: Path, network: dict[str, Any]) -> None:
    """Writes a descriptor atomically: readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(network, indent=2))
    os.replace(tmp, path)


def add_node(
    path: Path,
    entry: dict[str, Any],
    *,
    ca: str = "",
    admin_cert: str = "",
    admin_key: str = "",
    replace: bool = False,
) -> dict[str, Any]:
    """Adds (or with ``replace`` replaces) one node in the descriptor at ``path``.

    A descriptor that does not exist yet is created, which needs the CA and the
    operator's certificate and key. Returns the descriptor as written.
    """
    import re

    from nodes.common.identity import validate_entity_id

    if path.exists():
        network = load_network(path)
    else:
        if not (ca and admin_cert and admin_key):
            raise ValueError(
                f"{path} does not exist yet: give --ca, --admin-cert and --admin-key to create it"
            )
        network = {"ca": ca, "admin": {"cert": admin_cert, "key": admin_key}, "nodes": []}
    if ca:
        network["ca"] = ca
    if admin_cert and admin_key:
        network["admin"] = {"cert": admin_cert, "key": admin_key}
    validate_entity_id(entry["entity_id"])
    if entry["role"] not in NODE_ROLES:
        raise ValueError(f"--role must be one of {', '.join(sorted(NODE_ROLES))}")
    for key in ("address", "member_address"):
        value = entry.get(key, "")
        if value and not re.match(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$", value):
            raise ValueError(f"--{key.replace('_', '-')} {value!r} is not HOST:PORT")
    listed = [node for node in network["nodes"] if node["entity_id"] == entry["entity_id"]]
    if listed and not replace:
        raise ValueError(
            f"{path} already lists {entry['entity_id']!r}: pass --replace to overwrite it"
        )
    network["nodes"] = [
        node for node in network["nodes"] if node["entity_id"] != entry["entity_id"]
    ] + [{key: value for key, value in entry.items() if value not in ("", None)}]
    write_network(path, network)
    return network
