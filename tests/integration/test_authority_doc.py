"""docs/IDENTITY.md's authority table says exactly what the nodes enforce: which RPCs each
caller may call on each node, from where, and which operators each node accepts."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from nodes.common.correlation import REGISTERED_ROLES
from nodes.common.node import Node
from nodes.network.local import DEFAULT_TOPOLOGY, INSTITUTION, organization
from tests.support import Pki, node_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "IDENTITY.md"
NODES = ("approval", "verification", "settlement", "retail", "marketplace")
# Table row -> the certificate role it stands for (None: members on the member port).
CALLERS = {
    "institution operator": "admin",
    "organization operator": "admin",
    "shop node": "retail",
    "settlement agency node": "settlement",
    "marketplace node": "marketplace",
    "approval node": "approval",
    "verification node": "verification",
    "member, purchaser, shopper": None,
}
INSTITUTION_NODES = ("approval", "verification")


def documented() -> dict[str, dict[str, object]]:
    """caller -> {"where": text, node role: count (0 for a dash)}."""
    text = DOC.read_text()
    start = text.index("| caller | credential | from where |")
    rows: dict[str, dict[str, object]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        row: dict[str, object] = {"where": cells[2]}
        for node, cell in zip(NODES, cells[3:], strict=True):
            match = re.match(r"(\d+)", cell)
            row[node] = int(match.group(1)) if match else 0
        rows[cells[0]] = row
    return rows


@pytest.fixture(scope="module")
def policies(ca: Pki, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("authority")
    table = {}
    for role in NODES:
        extra: dict[str, object] = {} if role == "approval" else {"approval_address": "127.0.0.1:1"}
        if role in REGISTERED_ROLES:
            extra["program_serial"] = "SN-X"

        async def build(role: str = role, extra: dict[str, object] = extra) -> Node:
            return Node(node_config(tmp_path, ca, role, f"{role}-doc", operators=[], **extra))

        node = asyncio.run(build())
        try:
            table[role] = (node.parts.policies, node.config.accepted_operators)
        finally:
            node.store.close()
    return table


def test_the_authority_table_counts_what_each_caller_may_call_on_each_node(policies):
    doc = documented()
    assert set(doc) == set(CALLERS), "one row per kind of caller"
    for caller, role in CALLERS.items():
        for node in NODES:
            rules = policies[node][0].values()
            if role is None:
                allowed = sum(1 for rule in rules if rule.members)
            else:
                allowed = sum(1 for rule in rules if role in rule.roles)
            if caller == "institution operator" and node not in INSTITUTION_NODES:
                allowed = 0  # its certificate is refused there (scoping, tested below)
            if caller == "organization operator" and node in INSTITUTION_NODES:
                allowed = 0
            assert doc[caller][node] == allowed, (caller, node)


def test_the_table_says_where_each_caller_is_checked_from():
    doc = documented()
    for caller, role in CALLERS.items():
        where = str(doc[caller]["where"])
        if role == "admin":
            assert "operator_networks" in where, caller
        elif role in REGISTERED_ROLES:
            assert "registered address" in where, caller
        elif role is not None:
            assert f"{role}_address" in where, caller


def test_operators_are_scoped_as_the_table_says(policies):
    """A node accepts its own entity's operator by default; `up` gives the institution's
    operator to approval and verification only, and every other node its own."""
    for node in NODES:
        assert policies[node][1] == frozenset({f"{node}-doc"})
    for spec in DEFAULT_TOPOLOGY:
        expected = INSTITUTION if spec.role in INSTITUTION_NODES else spec.entity_id
        assert organization(spec) == expected
