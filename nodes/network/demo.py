"""``suretynet demo``: the main job. A fresh local network, every flow, each as a message sequence.

The sequences are not scripted: every node logs each RPC it receives with the flow's
trace ID, and the demo rebuilds ``sender -> receiver: Service/Method`` from those logs.
So what is printed is what crossed the network.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import tempfile
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from suretynet.type.v1 import types_pb2

from nodes.common import logs, telemetry
from nodes.common.status import decode_rpc_error
from nodes.network.local import LocalNetwork, describe, grpcurl_examples, start_network


@dataclass
class FlowContext:
    """What a demo flow gets: the network, its trace ID, and a place for its summary lines."""

    network: LocalNetwork
    trace_id: str
    notes: list[str] = field(default_factory=list)
    # Reasons of the refusals this flow provoked on purpose (expect_refusal records them).
    expected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A readable label stands for the trace ID every node logs and exports it under.
        self.trace_id = logs.trace_id_for(self.trace_id)

    def metadata(self) -> list[tuple[str, str]]:
        """Metadata for every call the flow makes, so the nodes log it under this trace."""
        return [(telemetry.TRACEPARENT_METADATA_KEY, telemetry.traceparent_for(self.trace_id))]

    def note(self, line: str) -> None:
        self.notes.append(line)


Flow = Callable[[FlowContext], Awaitable[None]]


@dataclass(frozen=True)
class DemoFlow:
    """One numbered flow of the demo: a title naming its claims, and the coroutine."""

    title: str
    run: Flow
    # Extra trace IDs whose messages belong to this flow (e.g. a node's own enrollment).
    extra_traces: tuple[str, ...] = ()
    # What the flow shows, in plain words for someone who has not read the claims.
    what: str = ""


# The flow running now, so that expect_refusal can note what it expected.
_running: contextvars.ContextVar[FlowContext | None] = contextvars.ContextVar(
    "running_flow", default=None
)


def registered_flows() -> list[DemoFlow]:
    """Every flow built so far, in the order the demo runs them."""
    from nodes.network.flows import cancellation, enrollment, mediation, purchase

    return [*enrollment.FLOWS, *purchase.FLOWS, *cancellation.FLOWS, *mediation.FLOWS]


def _entity(uri_or_node: str) -> str:
    return uri_or_node.rsplit("/", 1)[-1] if "/" in uri_or_node else uri_or_node


def message_sequence(
    network: LocalNetwork, trace_ids: set[str], expected: Collection[str] = ()
) -> list[str]:
    """Every RPC the nodes received under ``trace_ids``, in time order, as numbered lines.

    A refusal whose reason is in ``expected`` is marked as one the flow provoked on purpose.
    """
    trace_ids = {logs.trace_id_for(trace_id) for trace_id in trace_ids}
    events: list[dict[str, Any]] = []
    for log_file in sorted((network.data_dir / "logs").glob("*.log")):
        for line in log_file.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if entry.get("trace_id") in trace_ids and entry.get("msg") in ("rpc", "refused"):
                    events.append(entry)
    events.sort(key=lambda entry: entry["ts"])
    lines: list[str] = []
    for entry in events:
        receiver = _entity(entry["node"])
        method = entry["method"].lstrip("/").split(".")[-1]
        if entry["msg"] == "rpc":
            sender = (
                "operator"
                if entry["caller"].startswith("suretynet://admin/")
                else _entity(entry["caller"])
            )
            number = sum(1 for existing in lines if not existing.startswith("   ")) + 1
            lines.append(f"{number:>3}. {sender} -> {receiver}: {method}")
        else:
            mark = " (expected)" if entry["reason"] in expected else ""
            lines.append(f"       {receiver} refused: {entry['code']} {entry['reason']}{mark}")
    return lines


async def expect_refusal(call: Awaitable[Any], reason: str) -> str:
    """Awaits a call that must be refused with ``reason``; returns "CODE REASON"."""
    try:
        await call
    except grpc.RpcError as error:
        remote = decode_rpc_error(error)
        context = _running.get()
        if context is not None:
            context.expected.append(remote.reason)
        if remote.reason != reason:
            raise AssertionError(
                f"expected {reason}, got {remote.code.name} {remote.reason}: {remote.message}"
            ) from None
        return f"{remote.code.name} {remote.reason}"
    raise AssertionError(f"expected a refusal with {reason}, but the call succeeded")


@contextlib.contextmanager
def _temporary(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="suretynet-demo-") as directory:
        yield Path(directory)


async def run_demo(keep: Path | None = None) -> int:
    """Brings up a network, runs every flow, prints sequences and a summary; 0 if all passed.

    The network stops at the end. With ``keep`` its directory stays, and the demo prints the
    commands to try once ``suretynet up --data-dir KEEP`` has started it again.
    """
    results: list[tuple[str, bool, float, list[str]]] = []
    closing = ""
    with _temporary(keep) as data_dir:
        print("Starting a local SuretyNet network (each node its own process) ...", flush=True)
        started = time.monotonic()
        network = await start_network(data_dir)
        try:
            print(f"Network up in {time.monotonic() - started:.1f}s\n", flush=True)
            print(describe(network, examples=False), "\n", flush=True)
            for number, flow in enumerate(registered_flows(), start=1):
                context = FlowContext(
                    network, trace_id=f"demo-{number:02d}-{logs.new_trace_id()[:8]}"
                )
                print(f"== Flow {number}: {flow.title}", flush=True)
                if flow.what:
                    for line in textwrap.wrap(flow.what, 88):
                        print(f"   {line}")
                began = time.monotonic()
                token = _running.set(context)
                try:
                    await flow.run(context)
                    ok = True
                except Exception:
                    ok = False
                    print(traceback.format_exc(), flush=True)
                finally:
                    _running.reset(token)
                elapsed = time.monotonic() - began
                traces = {context.trace_id, *flow.extra_traces}
                for line in message_sequence(network, traces, context.expected):
                    print(line)
                for note in context.notes:
                    print(f"     {note}")
                print(f"   -> {'OK' if ok else 'FAILED'} ({elapsed * 1000:.0f} ms)\n", flush=True)
                results.append((flow.title, ok, elapsed, context.expected))
            closing = await where_to_look(network)
        finally:
            network.stop()
    print("== Summary")
    for title, ok, elapsed, expected in results:
        # A flow that shows a refusal succeeded when the refusal came as expected: say so,
        # so that "ok" is never read as "the purchase went through".
        outcome = "FAILED" if not ok else "ok"
        if ok and expected:
            outcome = f"ok, refused as expected: {', '.join(dict.fromkeys(expected))}"
        print(f"  [{outcome}] {title} ({elapsed * 1000:.0f} ms)")
    passed = sum(1 for _, ok, _, _ in results if ok)
    print(f"{passed} of {len(results)} flows succeeded")
    print(closing)
    if keep is not None:
        print(
            f"\nThe network is stopped; its directory is kept. Start it again as it was with\n"
            f"  suretynet up --data-dir {keep}\nthen try:"
        )
        for example in grpcurl_examples(network):
            print(f"  {example}")
    return 0 if results and passed == len(results) else 1


async def where_to_look(network: LocalNetwork) -> str:
    """The run's reconciliation, and the commands that show a live network's orders."""
    from nodes.operator import network as network_file
    from nodes.operator.reconcile import reconcile, render_table

    manifest = network_file.load(network.data_dir / "network.json")
    report = await reconcile(manifest)
    exports = await network_file.export_all(
        manifest,
        kind=types_pb2.FLOW_RECORD_KIND_ORDER,
        nodes=[node for node in manifest.nodes if node.role == "retail"],
    )
    orders = [record.order_number for export in exports for record in export.records]
    return "\n".join(
        [
            "",
            "== Where to look",
            "Reconciliation of this run (docs/RELIABILITY.md):",
            *(f"  {line}" for line in render_table(report).splitlines()),
            "On a network that keeps running (`suretynet up --data-dir /tmp/sn`):",
            "  suretynet trace ORDER --network /tmp/sn/network.json"
            + (f"   # this run's orders were e.g. {orders[0]}" if orders else ""),
            "  suretynet console --network /tmp/sn/network.json   # http://127.0.0.1:8089/",
            "Each node's Prometheus metrics (GET /metrics; `up` on a kept directory serves them "
            "at the same addresses):",
            *(
                f"  {node.spec.entity_id:<13} http://{node.metrics_address}/metrics"
                for node in network.nodes
                if node.metrics_address
            ),
        ]
    )
