"""The console's node metrics: read from a real Prometheus text endpoint, and degrading to a
plain statement when a node has none configured or it cannot be reached."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nodes.operator.console import node_metrics, parse_listen
from nodes.operator.network import NodeEntry

EXPOSITION = (
    "# HELP suretynet_flows_completed_total Flows completed\n"
    "# TYPE suretynet_flows_completed_total counter\n"
    'suretynet_flows_completed_total{flow="purchase"} 5\n'
    'suretynet_flows_completed_total{flow="cancellation"} 2\n'
    "suretynet_resumer_backlog 3\n"
    "process_cpu_seconds_total 1.5\n"
)


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = EXPOSITION.encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def exporter() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_key_metrics_are_read_from_the_nodes_endpoint(exporter: str) -> None:
    shown = node_metrics(NodeEntry("retail", "shop-1", "127.0.0.1:1", metrics_address=exporter))
    assert shown == {
        "state": "ok",
        "values": {"suretynet_flows_completed_total": 7.0, "suretynet_resumer_backlog": 3.0},
    }


def test_absent_or_unreachable_metrics_are_said_plainly() -> None:
    assert node_metrics(NodeEntry("retail", "shop-1", "127.0.0.1:1")) == {"state": "not configured"}
    closed = NodeEntry(
        "retail", "shop-1", "127.0.0.1:1", metrics_address=f"127.0.0.1:{_free_port()}"
    )
    assert str(node_metrics(closed)["state"]).startswith("unreachable")


@pytest.mark.parametrize("listen", ["8089", ":8089", "localhost:http", "127.0.0.1:70000"])
def test_a_bad_listen_address_is_refused_clearly(listen: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(listen)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8089") == ("::1", 8089)
