"""Metrics and traces on a network of real node processes: one purchase seen from outside.

The network runs approval, verification, one agency and one shop (directory discovery),
each exporting its spans to a trace file and over OTLP to a collector this test runs. The
test process is the member: its root span is the fifth process of the purchase's trace.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from nodes.common.status import decode_rpc_error
from nodes.network.local import DEFAULT_TOPOLOGY, LocalNetwork
from tests.e2e.purchase_support import buy
from tests.integration.test_metrics import Sample, scrape_sync, value

TOPOLOGY = tuple(
    spec
    for spec in DEFAULT_TOPOLOGY
    if spec.entity_id in ("institution", "verification", "agency-1", "shop-1")
)
NODE_SERVICES = {
    "approval/institution",
    "verification/verification",
    "settlement/agency-1",
    "retail/shop-1",
}
PLACE_ORDER = "suretynet.retail.v1.ShopService/PlaceOrder"
# Spans leave a node's trace file as they end; OTLP batches them every few seconds.
ARRIVAL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Span:
    """One finished span, from a trace file, the collector or the test's own exporter."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace receiver: keeps every span the nodes export to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                service = next(
                    attribute.value.string_value
                    for attribute in resource_spans.resource.attributes
                    if attribute.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self._spans.append(
                            Span(
                                service,
                                span.name,
                                trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex() or None,
                            )
                        )
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Span]:
        with self._lock:
            return list(self._spans)


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield receiver, port
    server.stop(None)


@pytest.fixture(scope="module")
def traced_network(
    network_factory: Callable[..., LocalNetwork], collector: tuple[Collector, int]
) -> LocalNetwork:
    _, port = collector
    return network_factory(
        TOPOLOGY, extra_config={"trace_files": True, "otlp_endpoint": f"http://127.0.0.1:{port}"}
    )


def file_spans(network: LocalNetwork, trace_id: str) -> list[Span]:
    spans = []
    for path in sorted((network.data_dir / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["context"]["trace_id"] != f"0x{trace_id}":
                continue
            parent = entry["parent_id"]
            spans.append(
                Span(
                    entry["resource"]["attributes"]["service.name"],
                    entry["name"],
                    entry["kind"].removeprefix("SpanKind."),
                    trace_id,
                    entry["context"]["span_id"].removeprefix("0x"),
                    parent.removeprefix("0x") if parent else None,
                )
            )
    return spans


def complete(root: Span, spans: list[Span]) -> bool:
    """Whether the shop's PlaceOrder span has arrived, no span's parent is missing, and every
    call (CLIENT span) has its callee's SERVER span: each process's spans arrive apart."""
    ids = {root.span_id, *(span.span_id for span in spans)}
    parents = {span.parent_id for span in spans}
    return (
        any(span.name == PLACE_ORDER for span in spans)
        and all(span.parent_id is None or span.parent_id in ids for span in spans)
        and all(span.span_id in parents for span in spans if span.kind == "CLIENT")
    )


def wait_for(root: Span, read: Callable[[], list[Span]]) -> list[Span]:
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    spans = read()
    while not complete(root, spans):
        assert time.monotonic() < deadline, f"the trace never completed: {spans}"
        time.sleep(0.2)  # polling a condition (files written by other processes)
        spans = read()
    return spans


def member_purchase(network: LocalNetwork, items: list[tuple[str, int]]) -> tuple[Span, str]:
    """Buys as alice at shop-1 under a root span of this process: (root span, order number)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "member"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")

    async def scenario() -> str:
        with tracer.start_as_current_span("member buys"):
            purchase = await buy(network, "agency-1", "alice", "shop-1", items)
            return purchase.order.order_number

    order_number = asyncio.run(scenario())
    (finished,) = exporter.get_finished_spans()
    assert finished.context is not None
    root = Span(
        "member",
        finished.name,
        "INTERNAL",
        format_trace_id(finished.context.trace_id),
        format_span_id(finished.context.span_id),
        None,
    )
    return root, order_number


def check_one_tree(root: Span, spans: list[Span]) -> None:
    by_id = {span.span_id: span for span in [root, *spans]}
    assert len(by_id) == len(spans) + 1, "span IDs are unique"
    assert [span for span in by_id.values() if span.parent_id is None] == [root]
    services = {span.service for span in spans}
    assert services == NODE_SERVICES, services
    for span in spans:
        parent = by_id[span.parent_id or ""]
        if span.kind == "SERVER" and parent is not root:
            # A hop: the caller's CLIENT span for the same method, in another process.
            assert parent.kind == "CLIENT" and parent.name == span.name, (parent, span)
            assert parent.service != span.service
        if span.kind == "CLIENT":
            assert parent.service == span.service, (parent, span)

    def hop(caller: str, callee: str, method: str) -> Span:
        server = next(
            span
            for span in spans
            if span.kind == "SERVER" and span.service == callee and span.name.endswith(method)
        )
        assert by_id[server.parent_id or ""].service == caller
        return server

    place_order = hop("member", "retail/shop-1", "/PlaceOrder")
    approve = hop("retail/shop-1", "settlement/agency-1", "/SearchBillingAgencyIdentification")
    verify = hop("retail/shop-1", "approval/institution", "/VerifyTransaction")
    report = hop("settlement/agency-1", "verification/verification", "/SubmitTransactionReport")

    def ancestors(span: Span) -> list[Span]:
        chain = []
        while span.parent_id is not None:
            span = by_id[span.parent_id]
            chain.append(span)
        return chain

    assert place_order in ancestors(approve)
    assert place_order in ancestors(verify)
    assert approve in ancestors(report)


def test_a_purchase_is_one_trace_across_five_processes(traced_network: LocalNetwork):
    """The member's root span, the shop, the agency, approval and verification: one tree,
    each hop a CLIENT span in the caller over a SERVER span in the callee; and every node
    logged the purchase under that trace's ID."""
    network = traced_network
    root, _ = member_purchase(network, [("tea", 1)])
    spans = wait_for(root, lambda: file_spans(network, root.trace_id))
    check_one_tree(root, spans)
    for entity in ("institution", "verification", "agency-1", "shop-1"):
        log = (network.data_dir / "logs" / f"{entity}.log").read_text().splitlines()
        assert any(json.loads(line)["trace_id"] == root.trace_id for line in log), entity


def test_the_same_spans_reach_an_otlp_collector(
    traced_network: LocalNetwork, collector: tuple[Collector, int]
):
    """With otlp_endpoint set, every node exports its spans over OTLP/gRPC too."""
    receiver, _ = collector
    root, _ = member_purchase(traced_network, [("mug", 1)])
    spans = wait_for(root, lambda: [s for s in receiver.spans() if s.trace_id == root.trace_id])
    check_one_tree(root, spans)


def test_purchase_metrics_move_on_the_shop_and_the_agency(traced_network: LocalNetwork):
    """A completed and a refused purchase move the flow counters at the shop and the agency,
    and the RPCs the shop made; the shop reports its certificate and license key expiry."""
    network = traced_network
    shop = network.node("shop-1").metrics_address
    agency = network.node("agency-1").metrics_address
    before: dict[str, Sample] = {"shop": scrape_sync(shop), "agency": scrape_sync(agency)}
    member_purchase(network, [("tea", 1)])
    with pytest.raises(grpc.RpcError) as refused:
        # Far over alice's credit limit: the agency refuses, after the shop began the flow.
        member_purchase(network, [("kettle", 500)])
    reason = decode_rpc_error(refused.value).reason
    after = {"shop": scrape_sync(shop), "agency": scrape_sync(agency)}

    def moved(node: str, name: str, **labels: str) -> float:
        return value(after[node], name, **labels) - value(before[node], name, **labels)

    assert moved("shop", "suretynet_flows_started_total", flow="purchase") == 2
    assert (
        moved(
            "shop", "suretynet_flow_outcomes_total", flow="purchase", outcome="completed", reason=""
        )
        == 1
    )
    assert (
        moved(
            "shop",
            "suretynet_flow_outcomes_total",
            flow="purchase",
            outcome="refused",
            reason=reason,
        )
        == 1
    )
    assert moved("agency", "suretynet_flows_started_total", flow="purchase_approval") == 2
    assert (
        moved(
            "agency",
            "suretynet_flow_outcomes_total",
            flow="purchase_approval",
            outcome="refused",
            reason=reason,
        )
        == 1
    )
    verify = "/suretynet.approval.v1.TransactionService/VerifyTransaction"
    assert moved("shop", "suretynet_rpc_called_seconds_count", method=verify, code="OK") == 1
    place_order = "/suretynet.retail.v1.ShopService/PlaceOrder"
    assert moved("shop", "suretynet_rpc_served_seconds_count", method=place_order, code="OK") == 1
    assert value(after["shop"], "suretynet_certificate_expiry_seconds", certificate="node") > 0
    assert value(after["shop"], "suretynet_license_key_expiry_seconds") > 0
    assert value(after["shop"], "process_cpu_seconds_total") > 0
