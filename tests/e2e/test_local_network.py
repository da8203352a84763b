"""`suretynet up`'s network: separate processes, network.json, grpcurl over mutual TLS."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nodes.network.local import LocalNetwork
from tests.support import grpcurl_binary

SURETYNET_SERVICES = {
    "approval": {
        "suretynet.approval.v1.EnrollmentService",
        "suretynet.approval.v1.ApprovalAdminService",
        "suretynet.approval.v1.DirectoryService",
        "suretynet.approval.v1.TransactionService",
    },
    "verification": {"suretynet.verification.v1.VerificationService"},
}


def grpcurl(network: LocalNetwork, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the real grpcurl with the admin certificate; ``args`` as on its command line."""
    binary = grpcurl_binary()
    return subprocess.run(
        [
            binary,
            "-cacert",
            str(network.ca),
            "-cert",
            str(network.admin_cert),
            "-key",
            str(network.admin_key),
            "-max-time",
            "20",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_network_json_describes_every_running_node(network: LocalNetwork):
    """One process per node, each with its own database, listed in network.json."""
    manifest = json.loads((network.data_dir / "network.json").read_text())
    roles = sorted(node["role"] for node in manifest["nodes"])
    assert roles == [
        "approval",
        "marketplace",
        "marketplace",
        "retail",
        "retail",
        "settlement",
        "settlement",
        "verification",
    ]
    assert len({node["database"] for node in manifest["nodes"]}) == 8
    assert len({node.process.pid for node in network.nodes}) == 8
    assert all(node.process.poll() is None for node in network.nodes)
    for key in ("ca", "admin"):
        assert key in manifest
    for node in manifest["nodes"]:
        assert set(node) >= {"role", "entity_id", "address", "cert", "key", "database"}


def test_grpcurl_lists_every_nodes_services_with_the_admin_certificate(network: LocalNetwork):
    """Reflection over mutual TLS on every node: grpcurl sees the suretynet services."""
    for node in network.nodes:
        result = grpcurl(network, node.address, "list")
        assert result.returncode == 0, result.stderr
        listed = set(result.stdout.split())
        assert "grpc.health.v1.Health" in listed
        assert any(name.startswith(f"suretynet.{node.spec.role}.v1.") for name in listed)
        assert listed >= SURETYNET_SERVICES.get(node.spec.role, set())


def test_grpcurl_describes_a_message_with_its_operator_comments(network: LocalNetwork):
    approval = network.node("institution")
    result = grpcurl(
        network, approval.address, "describe", "suretynet.approval.v1.RegisterEntityRequest"
    )
    assert result.returncode == 0, result.stderr
    assert "program_serial" in result.stdout
    assert "idempotency" in result.stdout.lower()


def test_health_reports_serving_on_every_node(network: LocalNetwork):
    for node in network.nodes:
        result = grpcurl(network, node.address, "grpc.health.v1.Health/Check")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "SERVING"


def test_grpcurl_without_a_client_certificate_is_refused(network: LocalNetwork):
    """The node port demands mutual TLS; a server-only TLS client cannot even list."""
    binary = grpcurl_binary()
    result = subprocess.run(
        [
            binary,
            "-cacert",
            str(network.ca),
            # The handshake is refused at once; grpcurl keeps retrying until this bound.
            "-max-time",
            "3",
            network.node("institution").address,
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""


def test_a_refusal_seen_through_grpcurl_carries_its_reason(network: LocalNetwork):
    """Every RPC is served now; a refusal reaches grpcurl as a status with its stable reason
    (here: verification holds no transaction report for an unknown order)."""
    result = grpcurl(
        network,
        "-d",
        '{"order_number": "X"}',
        network.node("verification").address,
        "suretynet.verification.v1.VerificationService/GetTransactionReport",
    )
    assert result.returncode != 0
    assert "NotFound" in result.stderr
    assert "TRANSACTION_REPORT_NOT_FOUND" in result.stderr


def test_each_node_accepts_only_its_own_organizations_operator(network: LocalNetwork):
    """The audit's attack: shop-1's operator listing agency-1's orders (linking members to
    anonymous IDs) is refused, as is the institution's operator; agency-1's own works."""
    agency = network.node("agency-1")
    manifest = json.loads((network.data_dir / "network.json").read_text())
    operators = {node["entity_id"]: node["operator"] for node in manifest["nodes"]}
    assert operators["institution"] == operators["verification"] == manifest["admin"]
    binary = grpcurl_binary()

    def list_orders(operator: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                binary,
                "-cacert",
                str(network.ca),
                "-cert",
                operator["cert"],
                "-key",
                operator["key"],
                "-max-time",
                "20",
                "-d",
                "{}",
                agency.address,
                "suretynet.settlement.v1.SettlementAdminService/ListOrders",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    own = list_orders(operators["agency-1"])
    assert own.returncode == 0, own.stderr
    for other in ("shop-1", "agency-2", "market-1", "institution"):
        refused = list_orders(operators[other])
        assert refused.returncode != 0, other
        assert "PermissionDenied" in refused.stderr and "OPERATOR_NOT_ACCEPTED" in refused.stderr


def test_node_files_are_private_to_the_operator(network: LocalNetwork):
    """Data directories 0700; databases, their WAL and key files 0600 (they hold password
    hashes, the agency's anonymous-ID key and sealed license keys)."""
    import stat

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(network.data_dir) == 0o711  # traversable (PostgreSQL's user), not listable
    for directory in (network.data_dir / "pki", network.data_dir / "logs"):
        assert mode(directory) == 0o700, directory
    for node in network.nodes:
        assert mode(node.directory) == 0o700, node.directory
        private = [node.directory / "node.db", node.directory / "node.db.secrets.key", node.key]
        private += [path for path in node.directory.glob("node.db-*")]
        for path in private:
            assert mode(path) == 0o600, path


def test_the_agencys_anonymous_id_key_is_sealed(network: LocalNetwork):
    """The MAC key behind anonymous user IDs is never in the agency's database in clear."""
    import asyncio
    import sqlite3

    import grpc
    from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

    agency = network.node("agency-1")

    async def issue_one() -> None:
        credentials = grpc.ssl_channel_credentials(network.ca.read_bytes())
        async with grpc.aio.secure_channel(agency.member_address, credentials) as channel:
            stub = settlement_pb2_grpc.MemberServiceStub(channel)
            login = await stub.Login(
                settlement_pb2.LoginRequest(member_id="alice", password="alice-demo-password"),
                timeout=20,
            )
            await stub.IssueAnonymousUserId(
                settlement_pb2.IssueAnonymousUserIdRequest(
                    request_id="sealed-key-1", retail_entity_id="shop-1"
                ),
                metadata=[("authorization", f"Bearer {login.session_token}")],
                timeout=20,
            )

    asyncio.run(issue_one())
    database = agency.directory / "node.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        values = [row[0] for row in db.execute("select key_hex from agency_secret")]
    assert values and all(value.startswith("s1:") for value in values)
