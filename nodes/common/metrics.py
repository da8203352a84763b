"""Prometheus metrics: what every node serves on its ``metrics_address``.

docs/OPERATIONS.md lists every metric with sample alert rules. The metrics live in this
process's default registry, next to prometheus_client's process collectors (CPU, memory,
open files): a node process serves its own. Where several nodes share one process (the
integration tests), they share its metrics too. The database's metrics are declared with
the database, in storage/common/database.py, which imports nothing from nodes/.

Flows report through two calls, at their start and at each outcome:

    metrics.flow_started("purchase")
    metrics.flow_outcome("purchase", "refused", error.reason)

Resumers and janitors register their backlog once and set it on every pass:

    backlog = metrics.register_backlog("purchase-resumer")
    backlog.set(items=len(rows), oldest_age_s=age_of_oldest)
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from cryptography import x509
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from nodes.common.errors import DomainError, ErrorKind
from storage.common.database import LATENCY_BUCKETS_S

# "Not now" rather than "no": the flow is still open, so these end no flow.
TRANSIENT_KINDS = (ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED)

FLOW_OUTCOMES = ("completed", "refused", "voided")

RPC_SERVED = Histogram(
    "suretynet_rpc_served_seconds",
    "RPCs this node served, by full method and status code: latency from admission to answer.",
    ["method", "code"],
    buckets=LATENCY_BUCKETS_S,
)
RPC_REFUSALS = Counter(
    "suretynet_rpc_refusals",
    "RPCs this node refused, by full method and stable reason (the ErrorInfo reason).",
    ["method", "reason"],
)
RPC_CALLED = Histogram(
    "suretynet_rpc_called_seconds",
    "Calls this node made to other nodes (each attempt), by full method and status code.",
    ["method", "code"],
    buckets=LATENCY_BUCKETS_S,
)


@functools.lru_cache(maxsize=4096)
def rpc_served(method: str, code: str) -> Any:
    """The RPC_SERVED series of one method and code, looked up once (not on every RPC)."""
    return RPC_SERVED.labels(method=method, code=code)


@functools.lru_cache(maxsize=4096)
def rpc_called(method: str, code: str) -> Any:
    """The RPC_CALLED series of one method and code, looked up once."""
    return RPC_CALLED.labels(method=method, code=code)


FLOWS_STARTED = Counter("suretynet_flows_started", "Flows this node started, by flow.", ["flow"])
FLOW_ENDS = Counter(
    "suretynet_flow_outcomes",
    "Flows this node ended, by flow, outcome (completed, refused, voided) and reason.",
    ["flow", "outcome", "reason"],
)
BACKLOG_ITEMS = Gauge(
    "suretynet_backlog_items",
    "Intermediate states a resumer or janitor found waiting on its last pass.",
    ["worker"],
)
BACKLOG_OLDEST_AGE = Gauge(
    "suretynet_backlog_oldest_age_seconds",
    "Age of the oldest intermediate state a resumer or janitor found on its last pass.",
    ["worker"],
)
CORRELATION_LOOKUPS = Counter(
    "suretynet_correlation_cache_lookups",
    "Registered-address lookups for address correlation: hit, miss (asked approval), or "
    "shared (waited for a lookup already in flight).",
    ["result"],
)
CORRELATION_REFUSALS = Counter(
    "suretynet_correlation_refusals",
    "Callers refused by address correlation, by reason.",
    ["reason"],
)
CERTIFICATE_EXPIRY = Gauge(
    "suretynet_certificate_expiry_seconds",
    "Seconds until a certificate this node uses expires (negative once expired).",
    ["certificate"],
)
LICENSE_KEY_EXPIRY = Gauge(
    "suretynet_license_key_expiry_seconds",
    "Seconds until this node's license key expires (negative once expired).",
)
NODE_INFO = Gauge(
    "suretynet_node_info", "Always 1: the role and entity this node runs as.", ["role", "entity_id"]
)


def flow_started(flow: str) -> None:
    """Counts the start of one ``flow`` (e.g. ``purchase``, ``cancellation``)."""
    FLOWS_STARTED.labels(flow=flow).inc()


def flow_outcome(flow: str, outcome: str, reason: str = "") -> None:
    """Counts one ``flow`` ending: ``completed``, ``refused`` or ``voided``, with a reason.

    ``reason`` is a stable reason code (the ErrorInfo reason of a refusal), never free
    text: each distinct value is a new time series.
    """
    if outcome not in FLOW_OUTCOMES:
        raise ValueError(f"flow outcome {outcome!r} is not one of {', '.join(FLOW_OUTCOMES)}")
    FLOW_ENDS.labels(flow=flow, outcome=outcome, reason=reason).inc()


@contextlib.contextmanager
def counting_refusals(flow: str) -> Iterator[None]:
    """Counts a DomainError leaving the block as ``flow`` refused, by its reason.

    For a flow whose refusals are raised from many helpers: wrap the flow's entry point.
    Transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) leave the flow open and
    are not counted.
    """
    try:
        yield
    except DomainError as error:
        if error.kind not in TRANSIENT_KINDS:
            flow_outcome(flow, "refused", error.reason)
        raise


@dataclass(frozen=True)
class Backlog:
    """One resumer's or janitor's backlog gauges; see ``register_backlog``."""

    worker: str

    def set(self, *, items: int, oldest_age_s: float | None) -> None:
        """Records the last pass: states found waiting and the oldest one's age (None: none)."""
        if items < 0:
            raise ValueError(f"backlog of {self.worker}: items must not be negative")
        BACKLOG_ITEMS.labels(worker=self.worker).set(items)
        BACKLOG_OLDEST_AGE.labels(worker=self.worker).set(oldest_age_s or 0.0)


def register_backlog(worker: str) -> Backlog:
    """Declares a resumer or janitor; its gauges read 0 until its first pass."""
    backlog = Backlog(worker)
    backlog.set(items=0, oldest_age_s=None)
    return backlog


def age_s(since: datetime.datetime | None) -> float | None:
    """Seconds since a naive-UTC or aware timestamp (a stored ``created_at``), or None."""
    if since is None:
        return None
    if since.tzinfo is None:
        since = since.replace(tzinfo=datetime.UTC)
    return max(0.0, time.time() - since.timestamp())


def watch_certificate(name: str, pem: Path) -> None:
    """Reports the seconds left on the certificate in ``pem``, computed at each scrape."""
    certificate = x509.load_pem_x509_certificate(pem.read_bytes())
    not_after = certificate.not_valid_after_utc.timestamp()
    CERTIFICATE_EXPIRY.labels(certificate=name).set_function(lambda: not_after - time.time())


def watch_license_key(expires_at: Callable[[], datetime.datetime | None]) -> None:
    """Reports the seconds left on this node's license key, read at each scrape from
    ``expires_at`` (the key held now, so a rotation shows at once; NaN while none)."""

    def seconds_left() -> float:
        deadline = expires_at()
        if deadline is None:
            return math.nan
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=datetime.UTC)
        return deadline.timestamp() - time.time()

    LICENSE_KEY_EXPIRY.set_function(seconds_left)


def node_info(role: str, entity_id: str) -> None:
    NODE_INFO.labels(role=role, entity_id=entity_id).set(1)


class MetricsServer:
    """The HTTP endpoint (``/metrics``) a node serves its metrics on, in its own thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host = str(server.server_address[0])
        self.address = (
            f"[{host}]:{server.server_port}" if ":" in host else f"{host}:{server.server_port}"
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(address: str) -> MetricsServer:
    """Serves the metrics on ``host:port`` (port 0: any free port; see ``.address``).

    Raises ValueError for an address without a port, OSError if it cannot be bound.
    """
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"metrics_address {address!r}: expected HOST:PORT")
    server, thread = start_http_server(int(port), addr=host.strip("[]"))
    return MetricsServer(server, thread)
