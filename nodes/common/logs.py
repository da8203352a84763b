"""Structured logs: one JSON object per line, each carrying the node and the flow's trace ID."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

TRACE_METADATA_KEY = "x-suretynet-trace-id"

trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="-")


def new_trace_id() -> str:
    return uuid.uuid4().hex


def current_trace_id() -> str:
    return trace_id_var.get()


class _JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.created * 1_000_000) % 1_000_000:06d}Z",
            "level": record.levelname,
            "node": self._node,
            "trace_id": trace_id_var.get(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(node: str, *, level: str = "INFO") -> None:
    """Sends every log line of this process to stderr as JSON tagged with ``node``."""
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
