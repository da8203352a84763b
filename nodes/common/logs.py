"""Structured logs: one JSON object per line, each carrying the node and the flow's trace ID.

The trace ID is the flow's OpenTelemetry trace ID (32 hex digits, nodes/common/telemetry.py):
inside an RPC or any span it is the current span's; outside one (start-up, a background
loop) it is what ``trace_id_var`` holds, and outgoing calls made there continue that trace.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace

# The legacy readable trace label. Nodes now propagate W3C ``traceparent``; a call that
# carries only this header is adopted into the trace ``trace_id_for(label)``.
TRACE_METADATA_KEY = "x-suretynet-trace-id"
_HEX = frozenset("0123456789abcdef")

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")


def new_trace_id() -> str:
    """A fresh random trace ID in the OpenTelemetry format (32 lowercase hex digits)."""
    return uuid.uuid4().hex


def is_trace_id(value: str) -> bool:
    """Whether ``value`` is a valid OpenTelemetry trace ID (32 hex digits, not all zero)."""
    return len(value) == 32 and set(value) <= _HEX and value != "0" * 32


def trace_id_for(label: str) -> str:
    """The trace ID a readable label stands for: itself if it is one, else a stable hash.

    So a tool or test may name a trace (``enrol-shop-1``, ``test-purchase``) and still find
    every node's log lines for it by ``trace_id_for(name)``.
    """
    if is_trace_id(label):
        return label
    return hashlib.sha256(label.encode()).hexdigest()[:32]


def current_trace_id() -> str:
    """The trace ID of the current span, else the one set for this task (``-`` if none).

    A label set in ``trace_id_var`` (``resume-cancel-ON-1``) reads as ``trace_id_for(label)``,
    the trace its outgoing calls continue.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return trace.format_trace_id(context.trace_id)
    label = trace_id_var.get()
    return label if label == "-" else trace_id_for(label)


class _JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node
        # The timestamp's text to the second, kept while the second lasts.
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int(created * 1_000_000) % 1_000_000:06d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "node": self._node,
            "trace_id": current_trace_id(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # orjson: the same JSON as the standard library's, in a fraction of the time.
        return orjson.dumps(entry, default=str).decode()


def _lean_records() -> None:
    """Stops the logging module working out, for every record, what no line here carries:
    the calling thread, process and source line (the logging HOWTO's "Optimization")."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # The caller's file and line: found by walking the stack.


def configure(node: str, *, level: str = "INFO") -> None:
    """Sends every log line of this process to stderr as JSON tagged with ``node``."""
    _lean_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def file_logger(name: str, path: Path, node: str) -> logging.Logger:
    """A logger writing JSON lines tagged with ``node`` to ``path`` only (not to stderr)."""
    logger = logging.getLogger(name)
    handler = logging.FileHandler(path)
    handler.setFormatter(_JsonFormatter(node))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def event(logger: logging.Logger, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """Logs ``message`` with structured ``fields`` merged into the JSON line."""
    logger.log(level, message, extra={"fields": fields})
