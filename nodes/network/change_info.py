"""``suretynet node change-info``: make a running node announce its own information again.

The node (nodes/common/announce.py) compares its installation information with approval's
registry entry on every start; SIGHUP makes it do so again at once, e.g. after a failed
announcement or when the institution changed the entry. This sends the SIGHUP to the
process network.json names and waits for the node's ``information.json`` (beside its ready
file) to record the new outcome.
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
