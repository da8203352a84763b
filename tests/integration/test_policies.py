"""The authorization table: every RPC a node serves is declared, and nothing more."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nodes.common.node import Node
from tests.support import Pki, node_config

ROLES = ["approval", "verification", "settlement", "retail", "marketplace"]


@pytest.mark.parametrize("role", ROLES)
def test_every_served_rpc_has_exactly_one_policy(ca: Pki, tmp_path: Path, role: str):
    """Fail closed: an RPC missing from the table would be refused to everyone."""
    extra = {} if role == "approval" else {"approval_address": "127.0.0.1:1"}
    if role in ("settlement", "retail", "marketplace"):
        extra["program_serial"] = "SN-X"

    async def build() -> Node:
        return Node(node_config(tmp_path, ca, role, f"{role}-1", **extra))

    node = asyncio.run(build())  # the grpc.aio server is created inside an event loop
    try:
        served = set()
        for service in node.parts.services:
            descriptor = _descriptor(service.name)
            served |= {f"/{service.name}/{method.name}" for method in descriptor.methods}
        assert set(node.parts.policies) == served
        for method, rule in node.parts.policies.items():
            assert rule.roles or rule.members, f"{method} is open to nobody"
    finally:
        node.store.close()


def _descriptor(full_name: str):
    from google.protobuf import descriptor_pool

    return descriptor_pool.Default().FindServiceByName(full_name)
