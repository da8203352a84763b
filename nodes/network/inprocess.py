"""In-process nodes for benchmarks and tests: a real CA, nodes on port 0, mutual-TLS channels.

The same harness serves `scripts/bench_*.py` and the test suite (tests import it from
here), so that no product script depends on the tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from nodes.common import pki, tls
from nodes.common.config import NodeConfig, TlsConfig, parse_config
from nodes.common.node import Node


class Pki:
    """A real network CA in a temporary directory, issuing certificates on demand."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        pki.init_ca(directory)
        self.ca = directory / "ca.pem"

    def issue(self, role: str, entity_id: str, ip: str = "127.0.0.1", **kwargs: Any) -> TlsConfig:
        out = self.directory / f"{ip}"
        cert = out / f"{role}-{entity_id}.pem"
        if kwargs or not cert.exists():
            issued = pki.issue_certificate(
                self.directory,
                role=role,
                entity_id=entity_id,
                ip_addresses=[ip],
                out_directory=out,
                **kwargs,
            )
            return TlsConfig(self.ca, issued.cert_path, issued.key_path)
        return TlsConfig(self.ca, cert, out / f"{role}-{entity_id}.key")

    def channel(
        self, address: str, role: str = "admin", entity_id: str = "operator"
    ) -> grpc.aio.Channel:
        """A mutual-TLS channel presenting ``role/entity_id``'s certificate."""
        return credentials_channel(address, self.issue(role, entity_id))


def credentials_channel(address: str, tls_config: TlsConfig) -> grpc.aio.Channel:
    credentials = tls.client_credentials(
        tls_config.ca.read_bytes(), tls_config.cert.read_bytes(), tls_config.key.read_bytes()
    )
    return grpc.aio.secure_channel(address, credentials)


def node_config(tmp_path: Path, ca: Pki, role: str, entity_id: str, **values: Any) -> NodeConfig:
    """A config for an in-process node on 127.0.0.1:0 with its own SQLite file."""
    options = values.pop("options", {})
    limits = values.pop("limits", {})
    data: dict[str, Any] = {
        "role": role,
        "entity_id": entity_id,
        "database_url": f"sqlite:///{tmp_path / f'{entity_id}.db'}",
        "listen_address": "127.0.0.1:0",
        # Every in-process node accepts the tests' one operator (Pki.channel's default), as
        # if each node's organization had issued it; scoping is proven in test_operators.
        "operators": ["operator"],
        # Outside the database whatever it is (PostgreSQL needs it named).
        "secrets_key_file": str(tmp_path / f"{entity_id}.secrets.key"),
        **values,
    }
    if role in ("retail", "settlement", "marketplace"):
        data.setdefault("member_listen_address", "127.0.0.1:0")
    if role == "settlement":
        # Required at start (config refuses an agency without one); tests that register
        # several agencies give each its own.
        options = {"routing_prefix": "4111", **options}
    tls_config = ca.issue(role, entity_id)
    data["tls"] = {"ca": tls_config.ca, "cert": tls_config.cert, "key": tls_config.key}
    return parse_config({**data, "options": options, "limits": limits}, environ={})


@contextlib.asynccontextmanager
async def running(config: NodeConfig) -> AsyncIterator[Node]:
    """Starts a node in this event loop, and always stops it."""
    node = Node(config)
    try:
        await node.start()
        yield node
    finally:
        await node.stop()
