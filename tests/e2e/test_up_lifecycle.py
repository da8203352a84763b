"""`suretynet up` as a long-lived network: fixed addresses, restarts, resuming a directory.

Runs the real `suretynet up` process and drives it only through network.json, signals and
the CLI, as an operator would (issue 15 "Restarts and addresses", issue 9 "`up` survives a
node's death").
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suretynet.retail.v1 import retail_pb2

from nodes.network.harness import (
    UpProcess,
    manifest_node,
    read_manifest,
    run_purchase,
    wait_for,
)
from tests.support import suretynet as run_suretynet

RESTART_TIMEOUT_S = 120.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def addresses(manifest: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {n["entity_id"]: (n["address"], n["member_address"]) for n in manifest["nodes"]}


def supervisor_log(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "logs" / "up.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def new_pid(data_dir: Path, entity_id: str, old_pid: int) -> int:
    pid = int(manifest_node(read_manifest(data_dir), entity_id)["pid"])
    return pid if pid != old_pid and alive(pid) else 0


def suretynet(*args: str) -> subprocess.CompletedProcess[str]:
    return run_suretynet(*args, timeout_s=RESTART_TIMEOUT_S + 30)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    process = UpProcess(tmp_path_factory.mktemp("up") / "net")
    try:
        process.start()
        yield process
    finally:
        process.stop()


def test_network_json_records_every_nodes_live_process_and_its_supervisor(up: UpProcess):
    manifest = read_manifest(up.data_dir)
    assert manifest["supervisor"]["pid"] == up.process.pid  # type: ignore[union-attr]
    pids = [int(node["pid"]) for node in manifest["nodes"]]
    assert len(set(pids)) == len(manifest["nodes"]) == 8
    assert all(alive(pid) for pid in pids)
    for node in manifest["nodes"]:
        config = Path(node["config"]).read_text()
        # The listen addresses are fixed in the node's own config, not chosen per start.
        assert f'listen_address = "{node["address"]}"' in config
        if node["member_address"]:
            assert f'member_listen_address = "{node["member_address"]}"' in config


def test_a_node_killed_with_sigkill_comes_back_on_its_address_and_sells(up: UpProcess):
    before = read_manifest(up.data_dir)
    shop = manifest_node(before, "shop-1")
    os.kill(int(shop["pid"]), signal.SIGKILL)
    pid = wait_for(
        lambda: new_pid(up.data_dir, "shop-1", int(shop["pid"])), RESTART_TIMEOUT_S, "restart"
    )
    after = read_manifest(up.data_dir)
    assert addresses(after) == addresses(before)
    order = run_purchase(after, "agency-1", "shop-1")
    assert order.status == retail_pb2.ORDER_STATUS_COMPLETED
    events = [(line["msg"], line.get("entity_id")) for line in supervisor_log(up.data_dir)]
    assert ("node exited", "shop-1") in events and ("node restarted", "shop-1") in events
    exited = next(line for line in supervisor_log(up.data_dir) if line["msg"] == "node exited")
    assert exited["exit"] == "killed by SIGKILL" and exited["level"] == "WARNING"
    assert alive(pid)


def test_node_restart_brings_the_node_back_with_a_new_process(up: UpProcess):
    network_json = str(up.data_dir / "network.json")
    before = read_manifest(up.data_dir)
    old_pid = int(manifest_node(before, "agency-2")["pid"])
    result = suretynet("node", "restart", "agency-2", "--network", network_json)
    assert result.returncode == 0, result.stderr
    after = read_manifest(up.data_dir)
    agency = manifest_node(after, "agency-2")
    assert int(agency["pid"]) != old_pid and not alive(old_pid)
    assert f"pid {agency['pid']}, SERVING at {agency['address']}" in result.stdout
    assert addresses(after) == addresses(before)
    assert run_purchase(after, "agency-2", "shop-2").status == retail_pb2.ORDER_STATUS_COMPLETED


def test_node_restart_refuses_an_unknown_entity_by_name(up: UpProcess):
    result = suretynet("node", "restart", "shop-99", "--network", str(up.data_dir / "network.json"))
    assert result.returncode == 2
    assert "no node 'shop-99'" in result.stderr and "Traceback" not in result.stderr


def test_up_on_the_same_directory_resumes_the_network_and_sells_again(up: UpProcess):
    before = read_manifest(up.data_dir)
    ca_digest = hashlib.sha256(Path(before["ca"]).read_bytes()).hexdigest()
    assert up.stop() == 0
    assert not any(alive(int(node["pid"])) for node in before["nodes"])
    # With no `up` running, a restart has nobody to start the node again: a clear refusal.
    result = suretynet("node", "restart", "shop-1", "--network", str(up.data_dir / "network.json"))
    assert result.returncode == 2 and "not supervised by a running" in result.stderr

    after = up.start()
    assert addresses(after) == addresses(before)
    assert hashlib.sha256(Path(after["ca"]).read_bytes()).hexdigest() == ca_digest
    for entity in ("agency-1", "agency-2", "shop-1", "shop-2", "market-1", "market-2"):
        log = Path(manifest_node(after, entity)["log"]).read_text()
        # Enrolled on the first start only: the second reuses the stored license key.
        assert log.count('"msg":"enrolled"') == 1, entity
    assert run_purchase(after, "agency-1", "shop-1").status == retail_pb2.ORDER_STATUS_COMPLETED
    assert run_purchase(after, "agency-2", "shop-2").status == retail_pb2.ORDER_STATUS_COMPLETED
