"""docs/PROTOCOL.md's authorization table says exactly what the nodes enforce."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from nodes.common.node import Node
from tests.support import Pki, node_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
NODE_ROLES = ("approval", "verification", "settlement", "retail", "marketplace", "admin")
MEMBER_WORDS = ("member", "purchaser", "shopper", "anyone")


def documented() -> dict[str, tuple[frozenset[str], bool]]:
    """(service, rpc) rows of every package table -> (certificate roles, members?)."""
    table: dict[str, tuple[frozenset[str], bool]] = {}
    package = ""
    for line in DOC.read_text().splitlines():
        heading = re.match(r"### (suretynet\.\w+\.v1)", line)
        if heading:
            package = heading.group(1)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not package or len(cells) < 3 or cells[0] in ("service", "---") or "---" in cells[0]:
            continue
        # Parenthesised remarks ("own", "no license key") qualify a role; they are not roles.
        callers = re.sub(r"\([^)]*\)", "", cells[2])
        words = set(re.findall(r"[a-z]+", callers))
        roles = frozenset(role for role in NODE_ROLES if role in words)
        members = any(word in words for word in MEMBER_WORDS)
        rpc = cells[1].split(" ")[0]  # "StreamX (server stream)" names StreamX
        table[f"/{package}.{cells[0]}/{rpc}"] = (roles, members)
    return table


def enforced(ca: Pki, tmp_path: Path) -> dict[str, tuple[frozenset[str], bool]]:
    table: dict[str, tuple[frozenset[str], bool]] = {}
    for role in ("approval", "verification", "settlement", "retail", "marketplace"):
        extra: dict[str, str] = {} if role == "approval" else {"approval_address": "127.0.0.1:1"}
        if role in ("settlement", "retail", "marketplace"):
            extra["program_serial"] = "SN-X"

        async def build(role: str = role, extra: dict[str, str] = extra) -> Node:
            return Node(node_config(tmp_path, ca, role, f"{role}-doc", **extra))

        node = asyncio.run(build())
        try:
            for method, rule in node.parts.policies.items():
                table[method] = (rule.roles, rule.members)
        finally:
            node.store.close()
    return table


def test_the_protocol_page_matches_the_enforced_policies(ca: Pki, tmp_path: Path):
    doc, code = documented(), enforced(ca, tmp_path)
    assert set(doc) == set(code), "every served RPC has one row, and every row is served"
    differences = {
        method: {"doc": doc[method], "code": code[method]}
        for method in code
        if doc[method] != code[method]
    }
    assert differences == {}
