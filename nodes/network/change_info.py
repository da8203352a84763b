"""``suretynet node change-info`` and ``rotate-key``: ask a running node to act now.

Both signal the process network.json names, on this host:
- SIGHUP: the node compares its installation information with approval's registry entry
  and sends any change (nodes/common/announce.py), as it does on every start; this waits
  for its ``information.json`` (beside its ready file) to record the new outcome;
- SIGUSR1: the node rotates its license key at once (nodes/common/license.py); this
  waits until approval lists the new key as active.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from nodes.common.announce import STATUS_FILE
from nodes.common.config import load_config
from nodes.network.descriptor import find_node, load_network

CHANGE_INFO_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1


def status_path(entry: dict[str, Any]) -> Path:
    """Where the node records its announcements: information.json beside its ready file."""
    config_path = entry.get("config")
    if not config_path:
        raise ValueError(f"network.json gives no config for {entry['entity_id']!r}")
    config = load_config(Path(config_path))
    if config.ready_file is None:
        raise ValueError(f"{config_path} sets no ready_file: the node records no status file")
    return config.ready_file.parent / STATUS_FILE


def _sequence(path: Path) -> int:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads(path.read_text())["sequence"])
    return 0


async def change_info(
    manifest_path: Path, entity_id: str, timeout_s: float = CHANGE_INFO_TIMEOUT_S
) -> dict[str, Any]:
    """SIGHUPs the node and returns its next announcement (outcome, fields, detail)."""
    manifest = load_network(manifest_path)
    entry = find_node(manifest, entity_id, path=str(manifest_path))
    if entry["role"] not in ("retail", "settlement", "marketplace"):
        raise ValueError(
            f"{entity_id} is a {entry['role']} node: it has no information to announce"
        )
    path = status_path(entry)
    before = _sequence(path)
    pid = int(entry.get("pid", 0))
    try:
        if not pid:
            raise ProcessLookupError
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as error:
        raise ValueError(
            f"{entity_id} is not running as pid {pid} (network.json): start it first"
        ) from error
    deadline = time.monotonic() + timeout_s
    while _sequence(path) <= before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{entity_id} recorded no announcement within {timeout_s:.0f}s")
        await asyncio.sleep(POLL_INTERVAL_S)
    status: dict[str, Any] = json.loads(path.read_text())
    return status


async def _newest_key(manifest: dict[str, Any], entity_id: str) -> str:
    import grpc
    from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc

    from nodes.common import tls
    from nodes.network.descriptor import find_role

    approval = find_role(manifest, "approval")
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    async with grpc.aio.secure_channel(approval["address"], credentials) as channel:
        response = await approval_pb2_grpc.ApprovalAdminServiceStub(channel).ListLicenseKeys(
            approval_pb2.ListLicenseKeysRequest(entity_id=entity_id), timeout=10
        )
    active = [
        key for key in response.license_keys if key.state == approval_pb2.LICENSE_KEY_STATE_ACTIVE
    ]
    newest = max(active, key=lambda key: key.issued_at.ToDatetime(), default=None)
    return newest.license_key_id if newest is not None else ""


async def rotate_key(
    manifest_path: Path, entity_id: str, timeout_s: float = CHANGE_INFO_TIMEOUT_S
) -> str:
    """SIGUSR1s the node (it rotates its license key now) and returns the new key's ID
    once approval lists it as active."""
    manifest = load_network(manifest_path)
    entry = find_node(manifest, entity_id, path=str(manifest_path))
    if entry["role"] not in ("retail", "settlement", "marketplace"):
        raise ValueError(f"{entity_id} is a {entry['role']} node: it holds no license key")
    before = await _newest_key(manifest, entity_id)
    pid = int(entry.get("pid", 0))
    try:
        if not pid:
            raise ProcessLookupError
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError as error:
        raise ValueError(
            f"{entity_id} is not running as pid {pid} (network.json): start it first"
        ) from error
    deadline = time.monotonic() + timeout_s
    while True:
        after = await _newest_key(manifest, entity_id)
        if after and after != before:
            return after
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{entity_id} did not rotate its key within {timeout_s:.0f}s: see its log"
            )
        await asyncio.sleep(POLL_INTERVAL_S)
