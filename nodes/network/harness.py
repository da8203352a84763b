"""Driving a ``suretynet up`` process from outside, as an operator would: for tests and tools.

``UpProcess`` starts ``suretynet up`` on a data directory and waits for its network.json;
``manifest_purchase`` buys as a demo member using only what network.json says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suretynet.retail.v1 import retail_pb2

from nodes.member.client import AgencyClient, ShopClient
from nodes.network.demo_data import members_of

UP_START_TIMEOUT_S = 180.0
UP_STOP_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1


def read_manifest(data_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((data_dir / "network.json").read_text())
    return manifest


def manifest_node(manifest: dict[str, Any], entity_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(n for n in manifest["nodes"] if n["entity_id"] == entity_id)
    return entry


class UpProcess:
    """A ``suretynet up --data-dir D`` process; ``stop`` ends it (and so every node)."""

    def __init__(self, data_dir: Path, *, netns: bool = False) -> None:
        self.data_dir = data_dir
        self.netns = netns
        self.output = data_dir.parent / f"{data_dir.name}-up.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> dict[str, Any]:
        """Starts ``up`` and returns network.json once this run wrote it with its own pid."""
        with self.output.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nodes.cli",
                    "up",
                    "--data-dir",
                    str(self.data_dir),
                    *(["--netns"] if self.netns else []),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + UP_START_TIMEOUT_S
        while True:
            manifest = self._current_manifest()
            if manifest is not None:
                return manifest
            if self.process.poll() is not None:
                raise RuntimeError(f"up exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"up did not write network.json:\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL_S)

    def _current_manifest(self) -> dict[str, Any] | None:
        """network.json once the supervisor of this run has recorded itself in it."""
        assert self.process is not None
        try:
            manifest = read_manifest(self.data_dir)
        except (OSError, json.JSONDecodeError):
            return None
        if manifest.get("supervisor", {}).get("pid") != self.process.pid:
            return None
        return manifest

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM to ``up``: it stops every node and exits; returns its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=UP_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def manifest_purchase(
    manifest: dict[str, Any],
    agency: str,
    shop: str,
    items: list[tuple[str, int]],
    *,
    request_id: str = "",
) -> retail_pb2.ShopOrder:
    """A demo member of ``agency`` buys ``items`` at ``shop``, addressed from network.json."""
    ca = Path(manifest["ca"]).read_bytes()
    member = members_of(agency)[0]
    agency_address = manifest_node(manifest, agency)["member_address"]
    shop_address = manifest_node(manifest, shop)["member_address"]
    async with AgencyClient(agency_address, ca) as client:
        await client.login(member.member_id, member.password)
        issued = await client.anonymous_user_id(shop)
    async with ShopClient(shop_address, ca) as shop_client:
        return await shop_client.place_order(
            issued.anonymous_user_id.value, items, request_id=request_id
        )


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    """Polls ``condition()`` until it returns something truthy; raises at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(POLL_INTERVAL_S)


def run_purchase(manifest: dict[str, Any], agency: str, shop: str) -> retail_pb2.ShopOrder:
    """``manifest_purchase`` of one tea, from synchronous code."""
    return asyncio.run(manifest_purchase(manifest, agency, shop, [("tea", 1)]))
