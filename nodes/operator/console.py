"""``suretynet console``: the operator's web page over a live network (loopback by default).

A small HTTP server from the standard library serves one static page, its script and style
sheet (console_static/, no build step), and four JSON endpoints that read the network over
the same admin RPCs as ``trace`` and ``reconcile``:

- ``/api/flows?q=TEXT``: recent orders, cancellations and mediations (newest first, at most
  ``RECENT_LIMIT``), those whose number contains TEXT, and the nodes that could not be read;
- ``/api/journey?order=NUMBER``: one order's journey (``trace.journey``), which the page
  draws as an SVG sequence diagram;
- ``/api/nodes``: each node's health and, where network.json gives its ``metrics_address``,
  its key Prometheus metrics (absent or unreachable metrics are shown as such);
- ``/api/reconcile``: the reconciliation report.

gRPC calls run on one event loop in a background thread; each HTTP request waits for its
answer, bounded by ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from suretynet.type.v1 import types_pb2

from nodes.operator import reconcile as reconciliation
from nodes.operator import trace as tracing
from nodes.operator.network import Network, NodeEntry, export_all, health

STATIC = Path(__file__).parent / "console_static"
STATIC_TYPES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
RECENT_LIMIT = 200
REQUEST_TIMEOUT_S = 60.0
METRICS_TIMEOUT_S = 3.0
# Metric families shown per node, when the node serves them: counters summed over labels.
KEY_METRIC_WORDS = ("rpc", "flow", "backlog", "oldest", "expiry", "refus", "void")
MAX_METRICS_SHOWN = 12
MAX_QUERY_LENGTH = 128

T = TypeVar("T")


class _Loop:
    """An asyncio loop on its own thread, for the gRPC calls of every HTTP request."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(REQUEST_TIMEOUT_S)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _stamp(record: types_pb2.FlowRecord) -> str:
    if not record.HasField("created_at"):
        return ""
    return str(record.created_at.ToDatetime().isoformat(timespec="milliseconds")) + "Z"


async def recent_flows(network: Network, query: str) -> dict[str, Any]:
    """Shops' orders and cancellations, and marketplaces' transactions, newest first.

    Only those kinds are read (the number filter matches parts of numbers, so it is applied
    here, not by the nodes).
    """
    shops = [node for node in network.nodes if node.role == "retail"]
    markets = [node for node in network.nodes if node.role == "marketplace"]
    batches = await asyncio.gather(
        export_all(network, kind=types_pb2.FLOW_RECORD_KIND_ORDER, nodes=shops),
        export_all(network, kind=types_pb2.FLOW_RECORD_KIND_CANCELLATION, nodes=shops),
        export_all(network, kind=types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION, nodes=markets),
    )
    exports = [export for batch in batches for export in batch]
    flows = []
    for export in exports:
        for record in export.records:
            if record.kind == types_pb2.FLOW_RECORD_KIND_ORDER:
                kind = "order"
            elif record.kind == types_pb2.FLOW_RECORD_KIND_CANCELLATION:
                kind = "cancellation"
            elif record.kind == types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION:
                if record.attributes.get("side") != "requester":
                    continue
                kind = (
                    "mediation"
                    if record.attributes.get("transaction_kind") == "MEDIATED"
                    else "marketplace sale"
                )
            else:
                continue
            number = (
                record.key
                if record.kind == types_pb2.FLOW_RECORD_KIND_MEDIATED_TRANSACTION
                else record.order_number
            )
            if query and query.lower() not in f"{number} {record.order_number}".lower():
                continue
            flows.append(
                {
                    "number": number,
                    "kind": kind,
                    "node": record.entity_id,
                    "state": record.state,
                    "amount": f"{record.amount.amount_minor} {record.amount.currency_code}",
                    "created_at": _stamp(record),
                }
            )
    flows.sort(key=lambda flow: flow["created_at"], reverse=True)
    errors = sorted({f"{e.node.entity_id}: {e.error}" for e in exports if e.error})
    return {"flows": flows[:RECENT_LIMIT], "errors": errors}


def key_metrics(text: str) -> dict[str, float]:
    """Key metric families from Prometheus text: samples summed over their labels."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value_part = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        if name.endswith(("_bucket", "_created")) or not any(w in name for w in KEY_METRIC_WORDS):
            continue
        try:
            value = float(value_part)
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + value
    return dict(sorted(sums.items())[:MAX_METRICS_SHOWN])


def node_metrics(node: NodeEntry) -> dict[str, Any]:
    """The node's key metrics from its metrics_address, or why there are none."""
    if not node.metrics_address:
        return {"state": "not configured"}
    url = f"http://{node.metrics_address}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as response:
            text = response.read(4_000_000).decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return {"state": f"unreachable ({error})"}
    return {"state": "ok", "values": key_metrics(text)}


async def node_overview(network: Network) -> list[dict[str, Any]]:
    """Each node: role, entity, address, health, and key metrics where it serves them."""
    statuses = await asyncio.gather(*(health(network, node) for node in network.nodes))
    metrics = await asyncio.gather(
        *(asyncio.to_thread(node_metrics, node) for node in network.nodes)
    )
    return [
        {
            "entity_id": node.entity_id,
            "role": node.role,
            "address": node.address,
            "health": status,
            "metrics": metric,
        }
        for node, status, metric in zip(network.nodes, statuses, metrics, strict=True)
    ]


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        params = urllib.parse.parse_qs(url.query)
        network, loop = self.server.network, self.server.loop
        try:
            if url.path in STATIC_TYPES:
                name, content_type = STATIC_TYPES[url.path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)
            elif url.path == "/api/flows":
                query = _param(params, "q")
                self._json(HTTPStatus.OK, loop.run(recent_flows(network, query)))
            elif url.path == "/api/journey":
                order = _param(params, "order")
                if not order:
                    self._json(HTTPStatus.BAD_REQUEST, {"error": "order: required"})
                    return
                self._json(HTTPStatus.OK, loop.run(tracing.trace(network, order)).as_json())
            elif url.path == "/api/nodes":
                self._json(HTTPStatus.OK, {"nodes": loop.run(node_overview(network))})
            elif url.path == "/api/reconcile":
                report = loop.run(reconciliation.reconcile(network))
                self._json(HTTPStatus.OK, report.as_json())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})
        except ValueError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        except TimeoutError:
            self._json(HTTPStatus.GATEWAY_TIMEOUT, {"error": "the network did not answer in time"})

    def _json(self, status: HTTPStatus, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)


def _param(params: dict[str, list[str]], name: str) -> str:
    value = (params.get(name) or [""])[0].strip()
    if len(value) > MAX_QUERY_LENGTH:
        raise ValueError(f"{name}: at most {MAX_QUERY_LENGTH} characters")
    return value


class ConsoleServer(ThreadingHTTPServer):
    """The console's HTTP server, bound to ``address``; ``serve_forever`` serves it."""

    daemon_threads = True

    def __init__(self, network: Network, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.network = network
        self.loop = _Loop()

    def server_close(self) -> None:
        super().server_close()
        self.loop.stop()


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError names what is wrong."""
    host, separator, port = listen.rpartition(":")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8089")
    return host.strip("[]"), int(port)


def run(network: Network, listen: str) -> int:
    """The CLI: serves until Ctrl-C; prints the URL first (its port, if 0 was asked)."""
    server = ConsoleServer(network, parse_listen(listen))
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"console: http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
