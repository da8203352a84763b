"""What every operator tool shares: network.json, admin channels, paged flow-record export.

Each node's admin service has ExportFlowRecords (one RPC per role package, one message type
in suretynet.type.v1); ``export_all`` pages through it on every node at once, with the
operator's admin certificate from network.json.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.marketplace.v1 import marketplace_pb2, marketplace_pb2_grpc
from suretynet.retail.v1 import retail_pb2, retail_pb2_grpc
from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc
from suretynet.type.v1 import types_pb2
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc

from nodes.common import tls
from nodes.common.channels import channel_target

CALL_TIMEOUT_S = 30.0
PAGE_SIZE = 500
# A bound on the pages read from one node, so a node that never ends its pages cannot
# keep a tool running forever (500 x 2,000 = one million records).
MAX_PAGES = 2_000

# role -> (admin stub factory, request type)
_EXPORTERS: dict[str, tuple[Callable[[grpc.aio.Channel], Any], Any]] = {
    "approval": (approval_pb2_grpc.ApprovalAdminServiceStub, approval_pb2.ExportFlowRecordsRequest),
    "verification": (
        verification_pb2_grpc.VerificationAdminServiceStub,
        verification_pb2.ExportFlowRecordsRequest,
    ),
    "settlement": (
        settlement_pb2_grpc.SettlementAdminServiceStub,
        settlement_pb2.ExportFlowRecordsRequest,
    ),
    "retail": (retail_pb2_grpc.RetailAdminServiceStub, retail_pb2.ExportFlowRecordsRequest),
    "marketplace": (
        marketplace_pb2_grpc.MarketplaceAdminServiceStub,
        marketplace_pb2.ExportFlowRecordsRequest,
    ),
}


class NetworkFileError(ValueError):
    """network.json is missing, unreadable or lacks what a tool needs."""


@dataclass(frozen=True)
class NodeEntry:
    """One node as network.json lists it."""

    role: str
    entity_id: str
    address: str
    metrics_address: str = ""
    # The node's own node.toml, where network.json names it (lifetimes are read from it).
    config: str = ""
    # The operator certificate and key of the node's organization (nodes[i].operator), the
    # only operator the node accepts; empty: the institution's (admin).
    operator_cert: bytes = b""
    operator_key: bytes = b""


@dataclass(frozen=True)
class Network:
    """A running network as network.json describes it, with the operator's credentials."""

    path: Path
    nodes: tuple[NodeEntry, ...]
    ca: bytes
    admin_cert: bytes
    admin_key: bytes
    settings: dict[str, Any] = field(default_factory=dict)

    def channel(self, node: NodeEntry) -> grpc.aio.Channel:
        """A channel to ``node`` as the operator of its organization (docs/IDENTITY.md)."""
        cert, key = (
            (node.operator_cert, node.operator_key)
            if node.operator_cert
            else (self.admin_cert, self.admin_key)
        )
        credentials = tls.client_credentials(self.ca, cert, key)
        # An entity run as several replicas is read through any replica that is up.
        target, options = channel_target(node.address)
        return grpc.aio.secure_channel(target, credentials, options=options)


def load(path: str | Path) -> Network:
    """Reads network.json (as `suretynet up` writes it); NetworkFileError names what is wrong."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
        nodes = _one_per_entity(
            NodeEntry(
                role=str(node["role"]),
                entity_id=str(node["entity_id"]),
                address=str(node["address"]),
                metrics_address=str(node.get("metrics_address") or ""),
                config=str(node.get("config") or ""),
                operator_cert=_read(node, "cert"),
                operator_key=_read(node, "key"),
            )
            for node in manifest["nodes"]
        )
        return Network(
            path=path,
            nodes=nodes,
            ca=Path(manifest["ca"]).read_bytes(),
            admin_cert=Path(manifest["admin"]["cert"]).read_bytes(),
            admin_key=Path(manifest["admin"]["key"]).read_bytes(),
            settings=dict(manifest),
        )
    except FileNotFoundError as error:
        raise NetworkFileError(f"{error.filename}: no such file") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise NetworkFileError(f"{path}: not a network.json ({error!r})") from None


def _one_per_entity(entries: Iterable[NodeEntry]) -> tuple[NodeEntry, ...]:
    """One entry per entity: the replicas of an entity (one database) are one node to a
    tool, reached at every replica's address (``ip:port,ip:port``)."""
    merged: dict[str, NodeEntry] = {}
    for entry in entries:
        first = merged.get(entry.entity_id)
        merged[entry.entity_id] = (
            entry if first is None else replace(first, address=f"{first.address},{entry.address}")
        )
    return tuple(merged.values())


def _read(node: dict[str, Any], name: str) -> bytes:
    operator = node.get("operator")
    if isinstance(operator, dict) and operator.get("cert") and operator.get("key"):
        return Path(operator[name]).read_bytes()
    return b""


@dataclass
class NodeExport:
    """What one node exported, or why it could not."""

    node: NodeEntry
    records: list[types_pb2.FlowRecord] = field(default_factory=list)
    error: str = ""


async def export_node(
    network: Network, node: NodeEntry, *, order_number: str = "", kind: int = 0
) -> NodeExport:
    """Every flow record of one node (all pages); a node that fails is reported, not raised."""
    exporter = _EXPORTERS.get(node.role)
    result = NodeExport(node)
    if exporter is None:
        result.error = f"role {node.role!r} exports no flow records"
        return result
    stub_type, request_type = exporter
    token = ""
    try:
        async with network.channel(node) as channel:
            stub = stub_type(channel)
            for _ in range(MAX_PAGES):
                response = await stub.ExportFlowRecords(
                    request_type(
                        page_size=PAGE_SIZE,
                        page_token=token,
                        order_number=order_number,
                        kind=kind,
                    ),
                    timeout=CALL_TIMEOUT_S,
                )
                result.records.extend(response.flow_records)
                token = response.next_page_token
                if not token:
                    break
            else:
                result.error = f"more than {MAX_PAGES} pages; stopped reading"
    except grpc.RpcError as error:
        result.error = f"{error.code().name}: {error.details()}"
    return result


async def export_all(
    network: Network,
    *,
    order_number: str = "",
    kind: int = 0,
    nodes: Sequence[NodeEntry] | None = None,
) -> list[NodeExport]:
    """Every node's flow records (of one order, or of one kind), asked of all nodes at once."""
    chosen = nodes if nodes is not None else network.nodes
    return list(
        await asyncio.gather(
            *(export_node(network, node, order_number=order_number, kind=kind) for node in chosen)
        )
    )


async def health(network: Network, node: NodeEntry) -> str:
    """The node's health status name (SERVING, NOT_SERVING...), or UNREACHABLE with why."""
    try:
        async with network.channel(node) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    except grpc.RpcError as error:
        return f"UNREACHABLE ({error.code().name})"


async def marketplace_books(
    network: Network, node: NodeEntry
) -> marketplace_pb2.ReconcileResponse | str:
    """The marketplace's own check of its books (MarketplaceAdminService/Reconcile)."""
    try:
        async with network.channel(node) as channel:
            response: marketplace_pb2.ReconcileResponse = (
                await marketplace_pb2_grpc.MarketplaceAdminServiceStub(channel).Reconcile(
                    marketplace_pb2.ReconcileRequest(), timeout=CALL_TIMEOUT_S
                )
            )
            return response
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"
