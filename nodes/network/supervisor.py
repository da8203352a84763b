"""Keeping a local network's nodes up: ``suretynet up`` restarts a node that dies.

A node that exits while the network runs is started again from its own config: the same
addresses, database and license key. How soon:
- a clean exit (status 0, which SIGTERM gives, as ``suretynet node restart`` sends)
  restarts at once;
- a crash restarts after a backoff that doubles with each consecutive crash, from
  ``MIN_BACKOFF_S`` up to ``MAX_BACKOFF_S``, and starts over once the node has stayed up
  for ``STABLE_AFTER_S``.
Every exit and restart is printed and written as a JSON line to logs/up.log, and
network.json gets the node's new process ID once it reports SERVING again.

``restart_supervised`` is the other half, for operators and tests: it signals the node,
lets the supervisor restart it, and returns once network.json shows a new process that
reports SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nodes.common import logs, tls
from nodes.network.descriptor import find_node, load_network
from nodes.network.local import (
    START_TIMEOUT_S,
    LocalNetwork,
    RunningNode,
    relaunch,
    wait_ready,
)

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
# How often the supervisor looks at its processes, and a restarting client at network.json.
POLL_INTERVAL_S = 0.2


def backoff_s(consecutive_crashes: int) -> float:
    """The wait before restarting a node after its ``consecutive_crashes``-th crash in a row."""
    if consecutive_crashes <= 0:
        return 0.0
    return min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (consecutive_crashes - 1))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Watches every node of ``network`` and restarts the ones that die, until stopped."""

    def __init__(
        self, network: LocalNetwork, echo: Callable[[str], None] = lambda line: None
    ) -> None:
        self.network = network
        self.echo = echo
        (network.data_dir / "logs").mkdir(exist_ok=True)
        self.log = logs.file_logger(
            f"suretynet.up.{id(self)}", network.data_dir / "logs" / "up.log", "up"
        )
        self.restarts: dict[str, int] = {}

    def _report(self, message: str, level: int = logging.INFO, **fields: Any) -> None:
        logs.event(self.log, message, level, **fields)
        details = " ".join(f"{key}={value}" for key, value in fields.items())
        self.echo(f"{message}: {details}")

    async def run(self, stopping: asyncio.Event) -> None:
        """Supervises until ``stopping`` is set; never restarts anything after that."""
        # The supervisor's lines carry a trace ID of their own, like every node's lifecycle.
        logs.trace_id_var.set("network-up")
        self.network.supervisor_pid = os.getpid()
        self.network.write_manifest()
        watchers = [asyncio.create_task(self._watch(node, stopping)) for node in self.network.nodes]
        try:
            await stopping.wait()
        finally:
            for watcher in watchers:
                watcher.cancel()
            for watcher in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _watch(self, node: RunningNode, stopping: asyncio.Event) -> None:
        crashes = 0
        started = time.monotonic()
        entity = node.spec.entity_id
        # Replicas of one entity are watched, restarted and counted one by one.
        name = node.log_name
        while not stopping.is_set():
            code = node.process.poll()
            if code is None:
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            if time.monotonic() - started >= STABLE_AFTER_S:
                crashes = 0
            crashes = 0 if code == 0 else crashes + 1
            delay = backoff_s(crashes)
            self._report(
                "node exited",
                logging.INFO if code == 0 else logging.WARNING,
                entity_id=entity,
                replica=node.replica,
                pid=node.pid,
                exit=describe_exit(code),
                restart_in_s=delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            if stopping.is_set():
                return
            relaunch(self.network, node)
            started = time.monotonic()
            try:
                await wait_ready(self.network, node)
            except (RuntimeError, TimeoutError, OSError) as error:
                # The next turn of the loop sees the exit (or makes it) and backs off.
                self._report(
                    "node failed to restart", logging.ERROR, entity_id=entity, error=str(error)
                )
                if node.process.poll() is None:
                    node.process.kill()
                    node.process.wait()
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.network.write_manifest()
            self._report(
                "node restarted",
                entity_id=entity,
                replica=node.replica,
                pid=node.pid,
                address=node.address,
                restarts=self.restarts[name],
            )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entry(manifest_path: Path, entity_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = load_network(manifest_path)
    return manifest, find_node(manifest, entity_id, path=str(manifest_path))


async def _serving(manifest: dict[str, Any], address: str) -> bool:
    credentials = tls.client_credentials(
        Path(manifest["ca"]).read_bytes(),
        Path(manifest["admin"]["cert"]).read_bytes(),
        Path(manifest["admin"]["key"]).read_bytes(),
    )
    async with grpc.aio.secure_channel(address, credentials) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def restart_supervised(
    manifest_path: Path, entity_id: str, timeout_s: float = START_TIMEOUT_S
) -> dict[str, Any]:
    """Restarts a node that ``suretynet up`` supervises; returns its new network.json entry.

    The mechanism: SIGTERM to the node's process (it drains and exits 0), the supervisor
    starts it again at once from its config, and this waits until network.json names a new
    process for the node and that node reports SERVING on its (unchanged) address.
    Raises ValueError if the node is unknown or no running ``up`` supervises it.
    """
    manifest, entry = _entry(manifest_path, entity_id)
    supervisor = int(manifest.get("supervisor", {}).get("pid", 0))
    if not supervisor or not _process_alive(supervisor):
        raise ValueError(
            f"{entity_id} is not supervised by a running 'suretynet up' (network.json records "
            "no live supervisor): restart it with the service manager that runs it"
        )
    old_pid = int(entry.get("pid", 0))
    with contextlib.suppress(ProcessLookupError):
        # Already gone: the supervisor is restarting it anyway.
        os.kill(old_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while True:
        manifest, entry = _entry(manifest_path, entity_id)
        new_pid = int(entry.get("pid", 0))
        if new_pid != old_pid and await _serving(manifest, entry["address"]):
            return entry
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{entity_id} did not report SERVING again within {timeout_s:.0f}s: "
                f"see {entry.get('log', 'its log')} and logs/up.log"
            )
        await asyncio.sleep(POLL_INTERVAL_S)
