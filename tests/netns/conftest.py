"""A network whose nodes run in their own namespaces with their own IPs, plus an intruder host.

Everything is torn down even when a test fails: the lab is a context manager around the
whole module, and the network's processes are stopped before the namespaces go.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodes.network.local import LocalNetwork, NodeSpec, start_network
from nodes.network.netns import NetnsLab
from tests.support import require_netns

REPO_ROOT = Path(__file__).resolve().parents[2]
# Short, so the address switch-over test finishes quickly; the docs give the general bound.
IDENTITY_CACHE_TTL_S = 2.0

TOPOLOGY = (
    NodeSpec("approval", "institution", "Credit Guarantee Institution"),
    NodeSpec("verification", "verification", "Verification"),
    NodeSpec("settlement", "agency-1", "Agency One", {"routing_prefix": "4111"}, True),
    NodeSpec("retail", "shop-1", "Shop One", {"discovery": "directory"}, True),
    NodeSpec("retail", "shop-2", "Shop Two", {"discovery": "directory"}, True),
)

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsLab]:
    require_netns()
    with NetnsLab() as lab:
        lab.add_host("intruder")
        yield lab


@pytest.fixture(scope="module")
def netns_network(
    lab: NetnsLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNetwork]:
    network = asyncio.run(
        start_network(
            tmp_path_factory.mktemp("netns-network"),
            TOPOLOGY,
            extra_config={"limits": {"identity_cache_ttl_s": IDENTITY_CACHE_TTL_S}},
            lab=lab,
        )
    )
    try:
        yield network
    finally:
        network.stop()


Probe = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def probe(lab: NetnsLab, netns_network: LocalNetwork) -> Probe:
    """Makes one RPC from inside ``host``'s namespace with the given credentials."""
    return make_probe(lab, netns_network.ca)


def make_probe(lab: NetnsLab, network_ca: Path) -> Probe:
    """A probe (see ``probe``) for any lab and network CA."""

    def run(
        host: str,
        target: str,
        method: str,
        request: dict[str, Any] | None = None,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        ca: Path | None = None,
        plaintext: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        argv = [
            sys.executable,
            "-m",
            "tests.netns.probe",
            "--target",
            target,
            "--method",
            method,
            "--request",
            json.dumps(request or {}),
        ]
        if plaintext:
            argv.append("--plaintext")
        else:
            argv += ["--ca", str(ca or network_ca)]
            if cert is not None and key is not None:
                argv += ["--cert", str(cert), "--key", str(key)]
        for name, value in (metadata or {}).items():
            argv += ["--metadata", f"{name}={value}"]
        completed = subprocess.run(
            lab.command(host, argv),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        return result

    return run
