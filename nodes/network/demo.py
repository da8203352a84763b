"""``suretynet demo``: the main job. A fresh local network, every flow, each as a message sequence.

The sequences are not scripted: every node logs each RPC it receives with the flow's
trace ID, and the demo rebuilds ``sender -> receiver: Service/Method`` from those logs.
So what is printed is what crossed the network.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from nodes.common import logs, telemetry
from nodes.common.status import decode_rpc_error
from nodes.network.local import LocalNetwork, describe, start_network


@dataclass
class FlowContext:
    """What a demo flow gets: the network, its trace ID, and a place for its summary lines.

    ``trace_id`` may be given as a readable label; it is kept as the trace ID it stands for
    (``logs.trace_id_for``), the one every node logs and exports the flow's spans under.
    """

    network: LocalNetwork
    trace_id: str
    notes: list[str] = field(default_factory=list)
    # Order numbers the flow made, for the closing summary's trace command.
    orders: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
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


def registered_flows() -> list[DemoFlow]:
    """Every flow built so far, in the order the demo runs them."""
    from nodes.network.flows import cancellation, enrollment, mediation, purchase

    return [*enrollment.FLOWS, *purchase.FLOWS, *cancellation.FLOWS, *mediation.FLOWS]


def _entity(uri_or_node: str) -> str:
    return uri_or_node.rsplit("/", 1)[-1] if "/" in uri_or_node else uri_or_node


def message_sequence(network: LocalNetwork, trace_ids: set[str]) -> list[str]:
    """Every RPC the nodes received under ``trace_ids``, in time order, as numbered lines."""
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
            lines.append(f"       {receiver} refused: {entry['code']} {entry['reason']}")
    return lines


async def expect_refusal(call: Awaitable[Any], reason: str) -> str:
    """Awaits a call that must be refused with ``reason``; returns "CODE REASON"."""
    try:
        await call
    except grpc.RpcError as error:
        remote = decode_rpc_error(error)
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


def where_to_look(network: LocalNetwork, orders: list[str], keep: Path | None) -> list[str]:
    """The summary's pointers: each node's metrics address and a trace command for an order."""
    lines = ["Each node served Prometheus metrics while the demo ran (GET /metrics):"]
    lines += [
        f"  {node.spec.entity_id:<13} http://{node.metrics_address}/metrics"
        for node in network.nodes
        if node.metrics_address
    ]
    manifest = network.data_dir / "network.json" if keep is not None else Path("DIR/network.json")
    if orders:
        lines.append(f"The journey of order {orders[0]} across the nodes, message by message:")
        lines.append(f"  suretynet trace {orders[0]} --network {manifest}")
    if keep is None:
        lines.append(
            "The demo's network is gone with its temporary directory: run `suretynet demo "
            "--keep DIR`, then `suretynet up --data-dir DIR` brings it back with its records."
        )
    else:
        lines.append(
            f"The network has stopped; `suretynet up --data-dir {network.data_dir}` brings it "
            "back with its records, at the same addresses."
        )
    return lines


async def run_demo(keep: Path | None = None) -> int:
    """Brings up a network, runs every flow, prints sequences and a summary; 0 if all passed."""
    results: list[tuple[str, bool, float]] = []
    orders: list[str] = []
    pointers: list[str] = []
    with _temporary(keep) as data_dir:
        print("Starting a local SuretyNet network (each node its own process) ...", flush=True)
        started = time.monotonic()
        network = await start_network(data_dir)
        try:
            print(f"Network up in {time.monotonic() - started:.1f}s\n", flush=True)
            print(describe(network), "\n", flush=True)
            for number, flow in enumerate(registered_flows(), start=1):
                context = FlowContext(network, trace_id=logs.new_trace_id())
                print(f"== Flow {number}: {flow.title}", flush=True)
                began = time.monotonic()
                try:
                    await flow.run(context)
                    ok = True
                except Exception:
                    ok = False
                    print(traceback.format_exc(), flush=True)
                elapsed = time.monotonic() - began
                for line in message_sequence(network, {context.trace_id, *flow.extra_traces}):
                    print(line)
                for note in context.notes:
                    print(f"     {note}")
                print(f"   -> {'OK' if ok else 'FAILED'} ({elapsed * 1000:.0f} ms)\n", flush=True)
                results.append((flow.title, ok, elapsed))
                orders += context.orders
            pointers = where_to_look(network, orders, keep)
        finally:
            network.stop()
    print("== Summary")
    for title, ok, elapsed in results:
        print(f"  [{'ok' if ok else 'FAILED'}] {title} ({elapsed * 1000:.0f} ms)")
    passed = sum(1 for _, ok, _ in results if ok)
    print(f"{passed} of {len(results)} flows succeeded")
    print("\n== Where to look")
    for line in pointers:
        print(f"  {line}")
    return 0 if results and passed == len(results) else 1
