"""``suretynet up``: a whole local network, each node its own process with its own database.

Each node has a SQLite file of its own, or, with ``--database postgresql``, a database and
login role of its own in a PostgreSQL cluster that ``up`` starts (nodes/network/postgres.py).

Layout of the data directory:
    pki/ca.pem, pki/ca.key          the network CA
    pki/<role>-<entity>.pem/.key    node certificates
    pki/admin-<organization>.*      one operator certificate per organization: the
                                    institution's (approval, verification) and each node's
    <entity>/node.toml              each node's config; <entity>/node.db its SQLite database
    postgres/                       the PostgreSQL cluster (data/, server.log), if chosen
    logs/<entity>.log               each node's JSON log lines
    traces/<entity>.jsonl           each node's finished spans, when started with trace files
    logs/up.log                     the supervisor's JSON lines: exits and restarts
    network.json                    written once every node reports SERVING, kept current

A node's config is written once, on the first start of the directory, with its listen
addresses fixed there: starting the same directory again resumes the same network, with
the same CA, certificates, databases, license keys and addresses (nothing re-enrols).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.common import pki, telemetry, tls
from nodes.common.convert import enum_value
from nodes.common.node import enrollment_trace_id
from nodes.network.netns import NetnsLab
from nodes.network.postgres import STATE_FILE, SUPERUSER, PostgresCluster, database_name

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# The institution's organization: its operator administers approval and verification only.
INSTITUTION = "institution"
INSTITUTION_ROLES = ("approval", "verification")
# In a lab every node has a namespace and an IP of its own, so the same ports serve all.
LAB_NODE_PORT = 7443
LAB_MEMBER_PORT = 8443
# Prometheus metrics, in a namespace (the port OpenTelemetry's Prometheus exporter uses).
LAB_METRICS_PORT = 9464
# Ports are chosen below the kernel's ephemeral range, so that an outgoing connection can
# never take a node's port while the node is down between a crash and its restart.
LOWEST_CHOSEN_PORT = 10_000
MAX_PORT_PROBES = 200
DATABASES = ("sqlite", "postgresql")
# The roles that run as several processes over one PostgreSQL database with ``replicas``:
# their flows keep no state in one process's memory (docs/DEPLOYMENT.md, "Replicas").
REPLICATED_ROLES = ("approval", "verification", "settlement")
MAX_REPLICAS = 8


class NodeStartError(RuntimeError):
    """A node of the local network exited or never reported SERVING; says which and why."""


@dataclass(frozen=True)
class NodeSpec:
    """One node of the local network."""

    role: str
    entity_id: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    serves_members: bool = False


# What `up` gives each marketplace so that an operator can try a purchase by hand: stock,
# contract members (password = member ID + "-pass"), and a mediation contract each way
# (market-1 asks market-2 under claim 6, market-2 asks market-1 under claim 7).
MARKET_ONE_SEED: dict[str, Any] = {
    "commodities": [
        {
            "commodity_id": "tea-sencha-100g",
            "display_name": "Sencha green tea, 100 g",
            "unit_price_minor": 1200,
            "currency_code": "JPY",
            "stock_quantity": 50,
            "delivery_days": 2,
        },
    ],
    "members": [
        {
            "member_id": "tanaka-trading",
            "kind": "CORPORATION",
            "display_name": "Tanaka Trading K.K.",
            "contact_email": "buyer@tanaka-trading.example",
            "postal_address": "1-1 Marunouchi, Chiyoda, Tokyo",
            "contact_telephone": "+81312345678",
            "corporate_registration_number": "0100-01-000001",
            "password": "tanaka-trading-pass",
        },
        {
            "member_id": "sato-hanako",
            "kind": "INDIVIDUAL",
            "display_name": "Sato Hanako",
            "contact_email": "hanako@example.org",
            "postal_address": "2-2 Umeda, Kita, Osaka",
            "password": "sato-hanako-pass",
        },
    ],
    "contracts": [
        {
            "contract_id": "mc-1-2",
            "partner_marketplace_id": "market-2",
            "fee_basis_points": 250,
            "settlement_mode": "PURCHASER_MARKETPLACE_BILLS",
            "direction": "OUTBOUND",
        },
        {
            "contract_id": "mc-2-1",
            "partner_marketplace_id": "market-2",
            "fee_basis_points": 300,
            "settlement_mode": "PARTNER_BILLS",
            "direction": "INBOUND",
        },
    ],
}
MARKET_TWO_SEED: dict[str, Any] = {
    "commodities": [
        {
            "commodity_id": "coffee-beans-1kg",
            "display_name": "Coffee beans, 1 kg",
            "unit_price_minor": 3480,
            "currency_code": "JPY",
            "stock_quantity": 40,
            "delivery_days": 3,
        },
    ],
    "members": [
        {
            "member_id": "suzuki-ichiro",
            "kind": "INDIVIDUAL",
            "display_name": "Suzuki Ichiro",
            "contact_email": "ichiro@example.org",
            "postal_address": "3-3 Sakae, Naka, Nagoya",
            "password": "suzuki-ichiro-pass",
        },
    ],
    "contracts": [
        {
            "contract_id": "mc-1-2",
            "partner_marketplace_id": "market-1",
            "fee_basis_points": 250,
            "settlement_mode": "PURCHASER_MARKETPLACE_BILLS",
            "direction": "INBOUND",
        },
        {
            "contract_id": "mc-2-1",
            "partner_marketplace_id": "market-1",
            "fee_basis_points": 300,
            "settlement_mode": "PARTNER_BILLS",
            "direction": "OUTBOUND",
        },
    ],
}

DEFAULT_TOPOLOGY: tuple[NodeSpec, ...] = (
    NodeSpec("approval", "institution", "Credit Guarantee Institution"),
    NodeSpec("verification", "verification", "Transaction Verification Server"),
    NodeSpec("settlement", "agency-1", "First Settlement Agency", {"routing_prefix": "4111"}, True),
    NodeSpec(
        "settlement", "agency-2", "Second Settlement Agency", {"routing_prefix": "5222"}, True
    ),
    NodeSpec(
        "retail",
        "shop-1",
        "Shop One",
        {"discovery": "directory", "cancel_procedure": "notified"},
        True,
    ),
    NodeSpec(
        "retail", "shop-2", "Shop Two", {"discovery": "push", "cancel_procedure": "verified"}, True
    ),
    NodeSpec("marketplace", "market-1", "Market One", MARKET_ONE_SEED, True),
    NodeSpec("marketplace", "market-2", "Market Two", MARKET_TWO_SEED, True),
)


@dataclass
class RunningNode:
    """A started node process and what it reported in its ready file."""

    spec: NodeSpec
    process: subprocess.Popen[bytes]
    directory: Path
    cert: Path
    key: Path
    address: str = ""
    member_address: str = ""
    metrics_address: str = ""
    # The node's own process ID, from its ready file (the launcher may wrap it).
    pid: int = 0
    # The operator certificate of the node's organization (suretynet://admin/<organization>).
    operator_cert: Path | None = None
    operator_key: Path | None = None
    # Which process of the entity this is (1 for the only one; 2.. for further replicas).
    replica: int = 1

    @property
    def log_name(self) -> str:
        """The name of its log file under logs/ (and of its host in a lab): the entity's,
        plus the replica's number."""
        return replica_host(self.spec.entity_id, self.replica)


def replica_host(entity_id: str, replica: int) -> str:
    """Names a replica: the entity for the first, ``<entity>-replica-<n>`` for the others
    (its log file, and its namespace under ``--netns``, where each has its own IP)."""
    return entity_id if replica == 1 else f"{entity_id}-replica-{replica}"


def organization(spec: NodeSpec) -> str:
    """The organization operating a node: the institution's nodes share one."""
    return INSTITUTION if spec.role in INSTITUTION_ROLES else spec.entity_id


def issue_operator_certificate(pki_dir: Path, org: str, ip: str) -> tuple[Path, Path]:
    """The operator certificate of ``org`` (suretynet://admin/<org>), issued once."""
    cert, key = pki_dir / f"admin-{org}.pem", pki_dir / f"admin-{org}.key"
    if not cert.exists():
        pki.issue_certificate(
            pki_dir, role="admin", entity_id=org, ip_addresses=[ip], out_directory=pki_dir
        )
    return cert, key


@dataclass
class LocalNetwork:
    """A running local network; ``stop`` ends every process it started."""

    data_dir: Path
    ca: Path
    admin_cert: Path
    admin_key: Path
    nodes: list[RunningNode] = field(default_factory=list)
    ip: str = "127.0.0.1"
    # With a lab, every node runs in its own network namespace with its own IP.
    lab: NetnsLab | None = None
    # Config every node of the network shares (approval and verification addresses).
    extra_config: dict[str, Any] = field(default_factory=dict)
    # The process that restarts nodes which die (``suretynet up``), recorded in network.json.
    supervisor_pid: int = 0
    # With a cluster, every node gets a PostgreSQL database of its own in it.
    postgres: PostgresCluster | None = None
    # The network started the cluster (``up``) and stops it; tests share one of their own.
    owns_postgres: bool = False
    # Keeps the databases of several networks on one cluster apart.
    database_prefix: str = ""
    # A synchronous standby of ``postgres``: node URLs name both, the writable one wins.
    postgres_standby: PostgresCluster | None = None
    # Processes per entity of the REPLICATED_ROLES (PostgreSQL only when above 1).
    replicas: int = 1
    # entity -> every replica's node address (the first is the entity's registered one).
    replica_addresses: dict[str, list[str]] = field(default_factory=dict)

    def replicas_of(self, spec: NodeSpec) -> int:
        return self.replicas if spec.role in REPLICATED_ROLES else 1

    def address_of(self, entity_id: str) -> str:
        """The address other nodes are configured with: every replica's, comma-separated."""
        return ",".join(self.replica_addresses[entity_id])

    def database_url(self, spec: NodeSpec) -> str:
        """The node's database: its SQLite file, or its own database and role in the cluster."""
        if self.postgres is None:
            return f"sqlite:///{self.data_dir / spec.entity_id / 'node.db'}"
        url = self.postgres.create_database(database_name(spec.entity_id, self.database_prefix))
        standby = self.postgres_standby
        if standby is None:
            return url
        primary = f"{self.postgres.host}:{self.postgres.port}"
        both = f"{primary},{standby.host}:{standby.port}"
        return url.replace(f"@{primary}/", f"@{both}/") + "?target_session_attrs=read-write"

    def database_location(self, node: RunningNode) -> str:
        """Where a node's data is, for network.json (a PostgreSQL URL without its password)."""
        if self.postgres is None:
            return str(node.directory / "node.db")
        name = database_name(node.spec.entity_id, self.database_prefix)
        return f"postgresql://{name}@{self.postgres.host}:{self.postgres.port}/{name}"

    def host_ip(self, entity_id: str) -> str:
        return self.lab.add_host(entity_id) if self.lab is not None else self.ip

    def node(self, entity_id: str) -> RunningNode:
        return next(node for node in self.nodes if node.spec.entity_id == entity_id)

    def operator_ip(self) -> str:
        """Where operator calls come from: the host (the bridge's address under a lab)."""
        return self.lab.gateway_ip if self.lab is not None else self.ip

    def operator_credentials(self, address: str) -> tuple[Path, Path]:
        """The operator certificate and key of the organization serving ``address``.

        Each node accepts only its own organization's operator, so a tool calling a node's
        admin RPCs must present that organization's certificate; the institution's is the
        fallback for an address no node of this network serves.
        """
        for node in self.nodes:
            if address in (node.address, node.member_address) and node.operator_cert:
                assert node.operator_key is not None
                return node.operator_cert, node.operator_key
        return self.admin_cert, self.admin_key

    def admin_channel(self, address: str) -> grpc.aio.Channel:
        """A mutual-TLS channel to ``address`` as the operator of the node serving it."""
        cert, key = self.operator_credentials(address)
        credentials = tls.client_credentials(
            self.ca.read_bytes(), cert.read_bytes(), key.read_bytes()
        )
        return grpc.aio.secure_channel(address, credentials)

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "ca": str(self.ca),
            # The institution's operator (approval and verification); each node's own
            # organization's operator is under nodes[i].operator.
            "admin": {"cert": str(self.admin_cert), "key": str(self.admin_key)},
            "nodes": [
                {
                    "role": node.spec.role,
                    "entity_id": node.spec.entity_id,
                    "address": node.address,
                    "member_address": node.member_address,
                    "metrics_address": node.metrics_address,
                    "cert": str(node.cert),
                    "key": str(node.key),
                    "database": self.database_location(node),
                    "config": str(node.directory / "node.toml"),
                    "log": str(self.data_dir / "logs" / f"{node.log_name}.log"),
                    "pid": node.pid or node.process.pid,
                    "operator": {"cert": str(node.operator_cert), "key": str(node.operator_key)},
                    "replica": node.replica,
                }
                for node in self.nodes
            ],
        }
        if self.replicas > 1:
            manifest["replicas"] = self.replicas
        if self.supervisor_pid:
            manifest["supervisor"] = {"pid": self.supervisor_pid}
        return manifest

    def write_manifest(self) -> None:
        """Writes network.json atomically: readers never see half a file."""
        path = self.data_dir / "network.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2))
        os.replace(tmp, path)

    def stop(self) -> None:
        """SIGTERM to every node (graceful drain), SIGKILL to any that outlives the bound;
        then the PostgreSQL cluster, if this network started it."""
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.nodes:
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        if self.postgres is not None and self.owns_postgres:
            self.postgres.stop()
            if self.postgres_standby is not None:
                self.postgres_standby.stop()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    return json.dumps(str(value))


def write_node_config(
    path: Path, values: dict[str, Any], tables: dict[str, dict[str, Any]]
) -> None:
    """Writes a node.toml from flat values and [tables] (options, tls, limits)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    for table, entries in tables.items():
        if entries:
            lines.append(f"\n[{table}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
    path.write_text("\n".join(lines) + "\n")


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out by this process: a probe frees its port at once, so without this two
# nodes configured before either starts could be given the same one.
_CHOSEN_PORTS: set[tuple[str, int]] = set()


def choose_port(ip: str) -> int:
    """A port free on ``ip`` now, below the ephemeral range; it becomes the node's for good."""
    ceiling = max(LOWEST_CHOSEN_PORT + 1, _ephemeral_port_floor())
    for _ in range(MAX_PORT_PROBES):
        port = random.randrange(LOWEST_CHOSEN_PORT, ceiling)
        if (ip, port) in _CHOSEN_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((ip, port))
            except OSError:
                continue
        _CHOSEN_PORTS.add((ip, port))
        return port
    raise RuntimeError(f"no free port on {ip} after {MAX_PORT_PROBES} tries")


def _fixed_address(network: LocalNetwork, entity_id: str, lab_port: int) -> str:
    ip = network.host_ip(entity_id)
    return f"{ip}:{lab_port if network.lab is not None else choose_port(ip)}"


def replica_directory(data_dir: Path, entity_id: str, replica: int = 1) -> Path:
    """Where a replica keeps its node.toml and ready file: the entity's directory for the
    first, ``<entity>/replica-<n>/`` for the others (they share the entity's secrets key)."""
    directory = data_dir / entity_id
    return directory if replica == 1 else directory / f"replica-{replica}"


def installed_config(data_dir: Path, entity_id: str, replica: int = 1) -> dict[str, Any] | None:
    """The node.toml an earlier start of this directory wrote for ``entity_id``, if any."""
    path = replica_directory(data_dir, entity_id, replica) / "node.toml"
    if not path.exists():
        return None
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: {error}") from error


def _start_process(
    network: LocalNetwork, spec: NodeSpec, config: dict[str, Any], replica: int = 1
) -> RunningNode:
    """Starts a node (one replica of it), writing its config first if this directory has
    none for it yet.

    An existing node.toml is used as it is: it holds the node's fixed addresses, and the
    operator may have edited it (a new display name, say) since.
    """
    directory = replica_directory(network.data_dir, spec.entity_id, replica)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    installed = installed_config(network.data_dir, spec.entity_id, replica)
    if installed is None and replica > 1:
        installed = _install_replica(network, spec, replica, directory)
    elif installed is None:
        installed = _install(network, spec, config, directory)
    tls_files = installed.get("tls", {})
    cert, key = Path(tls_files.get("cert", "")), Path(tls_files.get("key", ""))
    operator_cert, operator_key = issue_operator_certificate(
        network.data_dir / "pki", organization(spec), network.operator_ip()
    )
    node = RunningNode(
        spec,
        _launch(network, spec, directory, replica_host(spec.entity_id, replica)),
        directory,
        cert,
        key,
        operator_cert=operator_cert,
        operator_key=operator_key,
        replica=replica,
    )
    network.nodes.append(node)
    return node


def _install_replica(
    network: LocalNetwork, spec: NodeSpec, replica: int, directory: Path
) -> dict[str, Any]:
    """A further replica's config: the first replica's, with its own addresses and files.

    It shares the entity's certificate, database, secrets key and program serial, so it
    runs as the same registered entity (the license key is in the shared database).
    """
    first = installed_config(network.data_dir, spec.entity_id)
    assert first is not None, "the first replica is installed before the others"
    values = {key: value for key, value in first.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in first.items() if isinstance(value, dict)}
    values["listen_address"] = network.replica_addresses[spec.entity_id][replica - 1]
    values["ready_file"] = str(directory / "ready.json")
    host = replica_host(spec.entity_id, replica)
    values["metrics_address"] = _fixed_address(network, host, LAB_METRICS_PORT)
    if values.get("member_listen_address"):
        values["member_listen_address"] = _fixed_address(network, host, LAB_MEMBER_PORT)
    if values.get("trace_file"):
        values["trace_file"] = str(network.data_dir / "traces" / f"{host}.jsonl")
    write_node_config(directory / "node.toml", values, tables)
    return tomllib.loads((directory / "node.toml").read_text())


def _install(
    network: LocalNetwork, spec: NodeSpec, config: dict[str, Any], directory: Path
) -> dict[str, Any]:
    """Issues the node's certificate and writes its config, with its addresses fixed."""
    pki_dir = network.data_dir / "pki"
    cert = pki_dir / f"{spec.role}-{spec.entity_id}.pem"
    key = pki_dir / f"{spec.role}-{spec.entity_id}.key"
    # The entity's one certificate names every replica's IP (a host each in a lab).
    ips = list(
        dict.fromkeys(
            network.host_ip(replica_host(spec.entity_id, replica))
            for replica in range(1, network.replicas_of(spec) + 1)
        )
    )
    if not cert.exists():
        pki.issue_certificate(
            pki_dir,
            role=spec.role,
            entity_id=spec.entity_id,
            ip_addresses=ips,
            out_directory=pki_dir,
        )
    values: dict[str, Any] = {
        "role": spec.role,
        "entity_id": spec.entity_id,
        "name": spec.name,
        "listen_address": _fixed_address(network, spec.entity_id, LAB_NODE_PORT),
        "database_url": network.database_url(spec),
        "ready_file": str(directory / "ready.json"),
        # Only the node's own organization's operator, from the operator host.
        "operators": [organization(spec)],
        "operator_networks": [network.operator_ip()],
        # Beside the node's files, never in its database (SQLite or PostgreSQL).
        "secrets_key_file": str(directory / "node.db.secrets.key"),
        # Prometheus scrapes each node here; reachable from the host in a namespace too.
        "metrics_address": _fixed_address(network, spec.entity_id, LAB_METRICS_PORT),
        **config,
    }
    replicas = network.replica_addresses.get(spec.entity_id, [])
    if len(replicas) > 1:
        values["listen_address"] = replicas[0]
        values["replica_addresses"] = replicas
    # trace_files = true in the network's extra config: every node writes its own file.
    if values.pop("trace_files", False):
        values["trace_file"] = str(network.data_dir / "traces" / f"{spec.entity_id}.jsonl")
    if spec.serves_members:
        values["member_listen_address"] = _fixed_address(network, spec.entity_id, LAB_MEMBER_PORT)
    tables = {key: values.pop(key) for key in list(values) if isinstance(values[key], dict)}
    write_node_config(
        directory / "node.toml",
        values,
        {
            "tls": {"ca": str(network.ca), "cert": str(cert), "key": str(key)},
            **tables,
            "options": {**tables.pop("options", {}), **spec.options},
        },
    )
    return tomllib.loads((directory / "node.toml").read_text())


def _launch(
    network: LocalNetwork, spec: NodeSpec, directory: Path, log_name: str = ""
) -> subprocess.Popen[bytes]:
    """Starts ``suretynet node run`` on the node's config, logging to logs/<log_name>.log
    (the entity's name unless given)."""
    (directory / "ready.json").unlink(missing_ok=True)
    (network.data_dir / "logs").mkdir(mode=0o700, exist_ok=True)
    log_file = (network.data_dir / "logs" / f"{log_name or spec.entity_id}.log").open("ab")
    argv = [
        sys.executable,
        "-m",
        "nodes.cli",
        "node",
        "run",
        spec.role,
        "--config",
        str(directory / "node.toml"),
    ]
    if network.lab is not None:
        argv = network.lab.command(log_name or spec.entity_id, argv)
    process = subprocess.Popen(
        argv,
        stdout=log_file,
        stderr=log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log_file.close()
    return process


def stop_node(node: RunningNode) -> None:
    """SIGTERM (graceful drain), SIGKILL if the node outlives the bound."""
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
    try:
        node.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.wait()


async def restart_node(network: LocalNetwork, entity_id: str) -> RunningNode:
    """Stops a node and starts it again: same config, so same ports, database and key."""
    node = network.node(entity_id)
    stop_node(node)
    node.process = _launch(network, node.spec, node.directory, node.log_name)
    await wait_ready(network, node)
    network.write_manifest()
    return node


def relaunch(network: LocalNetwork, node: RunningNode) -> None:
    """Starts a node whose process has ended again, from its own config."""
    node.process = _launch(network, node.spec, node.directory, node.log_name)


def _verification_address(network: LocalNetwork) -> str:
    """Verification's address, fixed before approval starts (each needs the other's)."""
    if "verification" in network.replica_addresses:
        return network.address_of("verification")
    installed = installed_config(network.data_dir, "verification")
    if installed is not None and installed.get("listen_address"):
        return str(installed["listen_address"])
    return _fixed_address(network, "verification", LAB_NODE_PORT)


async def wait_ready(network: LocalNetwork, node: RunningNode) -> None:
    """Waits for the node's ready file, then for SERVING on its health service."""
    ready = node.directory / "ready.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if node.process.poll() is not None:
            log = network.data_dir / "logs" / f"{node.log_name}.log"
            tail = log.read_text().splitlines()[-15:] if log.exists() else []
            raise NodeStartError(
                f"{node.spec.entity_id} exited with {node.process.returncode}:\n" + "\n".join(tail)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.spec.entity_id} did not start within {START_TIMEOUT_S}s")
        await asyncio.sleep(0.05)
    info = json.loads(ready.read_text())
    node.address, node.member_address = info["address"], info["member_address"]
    node.metrics_address = info.get("metrics_address", "")
    node.pid = int(info.get("pid", node.process.pid))
    async with network.admin_channel(node.address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True
        )
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise NodeStartError(f"{node.spec.entity_id} reports {response.status}")


async def issue_serial(network: LocalNetwork, approval: str, role: str, note: str) -> str:
    """Asks approval (as the institution's operator) for a program serial for ``role``."""
    async with network.admin_channel(approval) as channel:
        stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
        response = await stub.IssueProgramSerial(
            approval_pb2.IssueProgramSerialRequest(
                request_id=f"serial-{note}",
                role=enum_value(types_pb2.Role, "ROLE_", role),
                note=note,
            ),
            timeout=10,
            metadata=[
                (
                    telemetry.TRACEPARENT_METADATA_KEY,
                    telemetry.traceparent_for(enrollment_trace_id(note)),
                )
            ],
        )
        return str(response.program_serial.serial)


async def start_network(
    data_dir: Path,
    topology: Sequence[NodeSpec] = DEFAULT_TOPOLOGY,
    *,
    extra_config: dict[str, Any] | None = None,
    lab: NetnsLab | None = None,
    seed_demo_data: bool = True,
    database: str = "sqlite",
    postgres: PostgresCluster | None = None,
    database_prefix: str = "",
    standby: bool = False,
    postgres_standby: PostgresCluster | None = None,
    replicas: int = 1,
) -> LocalNetwork:
    """Creates the PKI, starts approval, enrols and starts every other node, in order.

    With ``seed_demo_data`` each agency enrols its demo members and each shop stocks its
    demo catalog (nodes/network/demo_data.py), so a purchase can be made by hand at once.
    ``database="postgresql"`` puts every node on PostgreSQL: on ``postgres`` if given (the
    caller stops it; ``database_prefix`` keeps several networks apart on it), else on a
    cluster started in ``data_dir/postgres`` and stopped with the network. ``standby`` adds
    a synchronous streaming standby in ``data_dir/postgres-standby`` (or use the caller's
    ``postgres_standby`` of ``postgres``); every node's URL names both servers.
    ``replicas`` runs each node of the REPLICATED_ROLES as that many processes over its one
    database, each on its own fixed address (PostgreSQL only); peers spread their calls over
    them (nodes/common/channels.py).
    """
    if database not in DATABASES:
        raise ValueError(f"database {database!r}: choose one of {', '.join(DATABASES)}")
    check_replicas(replicas, database)
    if (standby or postgres_standby is not None) and database != "postgresql":
        raise ValueError("--standby needs --database postgresql")
    data_dir = data_dir.resolve()
    data_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    # Others may pass through (the PostgreSQL cluster's own user reaches postgres/) but not
    # list it; the node, pki and logs directories below are the operator's alone (0700).
    data_dir.chmod(0o711)
    pki_dir = data_dir / "pki"
    pki_dir.mkdir(mode=0o700, exist_ok=True)
    if not (pki_dir / "ca.pem").exists():
        pki.init_ca(pki_dir)
    admin_ip = lab.gateway_ip if lab is not None else "127.0.0.1"
    admin, admin_key = issue_operator_certificate(pki_dir, INSTITUTION, admin_ip)
    network = LocalNetwork(
        data_dir,
        pki_dir / "ca.pem",
        admin,
        admin_key,
        lab=lab,
        postgres=postgres,
        database_prefix=database_prefix,
        postgres_standby=postgres_standby,
        replicas=replicas,
    )
    extra = extra_config or {}
    if lab is not None:
        # Hosts get their IPs in topology order, so a resumed lab (same subnet) gives every
        # node the IP its certificate and its registered address already name.
        for spec in topology:
            network.host_ip(spec.entity_id)
        # Then every further replica, a host of its own.
        for spec in topology:
            for replica in range(2, network.replicas_of(spec) + 1):
                network.host_ip(replica_host(spec.entity_id, replica))
    try:
        if database == "postgresql" and network.postgres is None:
            # In a lab the cluster listens on the bridge, which every namespace reaches.
            network.postgres = PostgresCluster.start(
                data_dir / "postgres",
                host=lab.gateway_ip if lab is not None else "127.0.0.1",
                client_network=f"{lab.gateway_ip}/24" if lab is not None else "",
            )
            network.owns_postgres = True
            if standby:
                network.postgres_standby = PostgresCluster.start_standby(
                    data_dir / "postgres-standby", network.postgres
                )
        _plan_replicas(network, topology)
        # Approval checks shops against verification (step 10) and verification talks to
        # approval, so verification's address is fixed before either starts.
        if any(spec.role == "verification" for spec in topology):
            extra = {"verification_address": _verification_address(network), **extra}
        approval_spec = next(spec for spec in topology if spec.role == "approval")
        approval = _start_process(network, approval_spec, extra)
        await wait_ready(network, approval)
        approval_address = (
            network.address_of(approval_spec.entity_id)
            if approval_spec.entity_id in network.replica_addresses
            else approval.address
        )
        started = []
        for spec in topology:
            if spec.role == "approval":
                continue
            config: dict[str, Any] = {"approval_address": approval_address, **extra}
            if spec.role == "verification" and spec.entity_id not in network.replica_addresses:
                config["listen_address"] = config["verification_address"]
            if spec.role in ("retail", "settlement", "marketplace"):
                config["program_serial"] = await _serial_for(network, approval.address, spec)
            started.append(_start_process(network, spec, config))
        await asyncio.gather(*(wait_ready(network, node) for node in started))
        # Further replicas start once the first has migrated the schema and enrolled (its
        # license key is then in the database they share).
        further = [
            _start_process(network, spec, {}, replica)
            for spec in topology
            for replica in range(2, network.replicas_of(spec) + 1)
        ]
        await asyncio.gather(*(wait_ready(network, node) for node in further))
        network.extra_config = extra
        if seed_demo_data:
            from nodes.network.demo_data import seed

            await seed(network)
    except BaseException:
        network.stop()
        raise
    network.write_manifest()
    return network


def check_replicas(replicas: int, database: str) -> None:
    """Refuses a replica count ``up`` cannot run; raises ValueError saying why."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"--replicas {replicas}: choose 1 to {MAX_REPLICAS}")
    if replicas > 1 and database != "postgresql":
        raise ValueError(
            f"--replicas {replicas} needs --database postgresql: replicas are several "
            "processes writing one database, and one SQLite file is not built for several "
            "writing processes (docs/DEPLOYMENT.md, 'Replicas')"
        )


def _plan_replicas(network: LocalNetwork, topology: Sequence[NodeSpec]) -> None:
    """Fixes every replica's node address before any node starts: each peer's config
    names all of them. A resumed directory keeps the addresses its configs hold."""
    for spec in topology:
        count = network.replicas_of(spec)
        if count <= 1:
            continue
        addresses = []
        for replica in range(1, count + 1):
            installed = installed_config(network.data_dir, spec.entity_id, replica) or {}
            address = str(installed.get("listen_address", ""))
            if not address or address.endswith(":0"):
                address = _fixed_address(
                    network, replica_host(spec.entity_id, replica), LAB_NODE_PORT
                )
            addresses.append(address)
        network.replica_addresses[spec.entity_id] = addresses


def resumed_replicas(data_dir: Path) -> int | None:
    """The replica count an earlier start of ``data_dir`` ran with, or None."""
    path = data_dir / "network.json"
    if not path.exists():
        return None
    try:
        return int(json.loads(path.read_text()).get("replicas", 1))
    except (TypeError, ValueError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a network.json written by 'up': {error}") from error


def resumed_topology(data_dir: Path) -> tuple[NodeSpec, ...] | None:
    """The nodes an earlier start of ``data_dir`` ran (from its network.json), or None.

    Each node then starts from its own node.toml, so only role, entity and whether it
    serves members are taken from here.
    """
    path = data_dir / "network.json"
    if not path.exists():
        return None
    try:
        listed = json.loads(path.read_text())["nodes"]
        specs = []
        for entry in listed:
            if int(entry.get("replica", 1)) != 1:
                continue  # a further replica of an entity listed already
            installed = installed_config(data_dir, entry["entity_id"]) or {}
            specs.append(
                NodeSpec(
                    entry["role"],
                    entry["entity_id"],
                    str(installed.get("name", entry["entity_id"])),
                    serves_members=bool(installed.get("member_listen_address")),
                )
            )
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a network.json written by 'up': {error}") from error
    approval_first = sorted(specs, key=lambda spec: spec.role != "approval")
    return tuple(approval_first)


async def start_node(network: LocalNetwork, spec: NodeSpec) -> RunningNode:
    """Adds a node to a running network: serial from approval, enrolment, ready."""
    approval = next(node for node in network.nodes if node.spec.role == "approval")
    config: dict[str, Any] = {"approval_address": approval.address, **network.extra_config}
    if spec.role in ("retail", "settlement", "marketplace"):
        config["program_serial"] = await _serial_for(network, approval.address, spec)
    node = _start_process(network, spec, config)
    await wait_ready(network, node)
    network.write_manifest()
    return node


async def _serial_for(network: LocalNetwork, approval: str, spec: NodeSpec) -> str:
    """Reuses the serial a node was installed with on an earlier run of the same directory."""
    config = network.data_dir / spec.entity_id / "node.toml"
    if config.exists():
        for line in config.read_text().splitlines():
            if line.startswith("program_serial = "):
                return str(json.loads(line.split(" = ", 1)[1]))
    return await issue_serial(network, approval, spec.role, spec.entity_id)


def grpcurl_examples(network: LocalNetwork) -> list[str]:
    """Ready-to-paste grpcurl commands using the institution's operator certificate."""
    tls_flags = f"-cacert {network.ca} -cert {network.admin_cert} -key {network.admin_key}"
    approval = next(node for node in network.nodes if node.spec.role == "approval")
    examples = [f"grpcurl {tls_flags} {node.address} list" for node in network.nodes[:2]]
    agencies = [node for node in network.nodes if node.spec.role == "settlement"]
    if agencies and agencies[0].operator_cert:
        # Every other node takes only its own organization's operator certificate.
        agency = agencies[0]
        examples.append(
            f"grpcurl -cacert {network.ca} -cert {agency.operator_cert} "
            f"-key {agency.operator_key} -d '{{}}' {agency.address} "
            "suretynet.settlement.v1.SettlementAdminService/ListOrders"
        )
    examples.append(
        f"grpcurl {tls_flags} {approval.address} describe suretynet.approval.v1.EnrollmentService"
    )
    examples.append(
        f'grpcurl {tls_flags} -d \'{{"role": "ROLE_RETAIL"}}\' {approval.address} '
        "suretynet.approval.v1.ApprovalAdminService/ListEntities"
    )
    examples.append(
        f'grpcurl {tls_flags} -d \'{{"request_id": "serial-new-shop", "role": '
        f'"ROLE_RETAIL", "note": "new shop"}}\' {approval.address} '
        "suretynet.approval.v1.ApprovalAdminService/IssueProgramSerial"
    )
    examples.append(f"grpcurl {tls_flags} {approval.address} grpc.health.v1.Health/Check")
    markets = [node for node in network.nodes if node.spec.role == "marketplace"]
    if markets and markets[0].member_address:
        # A purchaser has no certificate: server-only TLS on the member port (docs/MARKETPLACE.md).
        examples.append(
            f'grpcurl -cacert {network.ca} -d \'{{"member_id": "tanaka-trading", '
            f'"password": "tanaka-trading-pass"}}\' {markets[0].member_address} '
            "suretynet.marketplace.v1.PurchaserService/Login"
        )
    return examples


def describe(network: LocalNetwork, *, examples: bool = True) -> str:
    """The network's nodes and addresses; with ``examples``, commands to try against it
    (only for a network that keeps running)."""
    lines = [f"SuretyNet local network in {network.data_dir}", ""]
    for node in network.nodes:
        member = f"  members: {node.member_address}" if node.member_address else ""
        lines.append(f"  {node.spec.role:<12} {node.log_name:<13} {node.address}{member}")
    lines += ["", "Prometheus metrics (GET /metrics):"]
    lines += [
        f"  {node.log_name:<13} http://{node.metrics_address}/metrics"
        for node in network.nodes
        if node.metrics_address
    ]
    if network.postgres is not None:
        cluster = network.postgres
        lines += [
            "",
            f"  PostgreSQL   {cluster.host}:{cluster.port}  one database and role per node "
            f"(network.json); superuser {SUPERUSER}, password in {cluster.directory}/{STATE_FILE}",
        ]
        if network.postgres_standby is not None:
            standby = network.postgres_standby
            lines.append(
                f"  standby      {standby.host}:{standby.port}  synchronous, in {standby.directory}"
            )
    lines += ["", f"network.json: {network.data_dir / 'network.json'}"]
    if examples:
        lines += ["", "Try:", *(f"  {example}" for example in grpcurl_examples(network))]
    return "\n".join(lines)


def _lab_for(data_dir: Path) -> NetnsLab:
    """A lab on the subnet this directory's network used before, so its IPs stay the same."""
    path = data_dir / "netns.json"
    if path.exists():
        lab = NetnsLab(subnet_octet=int(json.loads(path.read_text())["subnet_octet"]))
    else:
        lab = NetnsLab()
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"subnet_octet": lab.subnet_octet}))
    return lab


async def run_up(
    data_dir: Path,
    *,
    netns: bool = False,
    database: str = "sqlite",
    standby: bool = False,
    extra_config: dict[str, Any] | None = None,
    replicas: int = 1,
) -> int:
    """Starts (or resumes) the network, prints it, and keeps it up until Ctrl-C or SIGTERM.

    On a directory an earlier ``up`` used, the same nodes start from their own configs
    (same CA, certificates, databases, keys and addresses). A node that dies is restarted
    (nodes/network/supervisor.py). With ``netns`` every node runs in its own network
    namespace with its own IP (root only), so address correlation sees separate hosts. With
    ``database="postgresql"`` every node has its own database in a local PostgreSQL cluster,
    and with ``standby`` that cluster has a synchronous standby. ``replicas`` runs approval,
    verification and each settlement agency as that many processes (PostgreSQL only).
    """
    from nodes.network.supervisor import Supervisor

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    data_dir = data_dir.resolve()
    topology = resumed_topology(data_dir) or DEFAULT_TOPOLOGY
    earlier = resumed_replicas(data_dir)
    if earlier is not None and earlier != replicas:
        print(
            f"suretynet up: {data_dir} was started with --replicas {earlier}; start it again "
            f"with --replicas {earlier} (a network keeps its replica count)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    lab = _lab_for(data_dir) if netns else None
    if lab is not None:
        lab.start()
    try:
        network = await start_network(
            data_dir,
            topology,
            lab=lab,
            database=database,
            standby=standby,
            extra_config=extra_config,
            replicas=replicas,
        )
    except (NodeStartError, TimeoutError) as error:
        if lab is not None:
            lab.teardown()
        print(f"suretynet up: the network did not start: {error}", file=sys.stderr, flush=True)
        return 1
    except BaseException:
        if lab is not None:
            lab.teardown()
        raise
    try:
        print(describe(network), flush=True)
        print("\nRunning; a node that dies is restarted; Ctrl-C stops every node.", flush=True)
        await Supervisor(network, echo=lambda line: print(line, flush=True)).run(stopping)
        return 0
    finally:
        network.stop()
        if lab is not None:
            lab.teardown()
        print("stopped", flush=True)
