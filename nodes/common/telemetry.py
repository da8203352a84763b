"""OpenTelemetry traces: each flow is one trace across every node it crosses.

Every RPC a node serves is a SERVER span (nodes/common/interceptor.py) and every call it
makes is a CLIENT span (nodes/common/channels.py, one per attempt). So one purchase is one
tree: the member's call, the shop's PlaceOrder under it, the shop's calls to approval and
the agency under that, and their calls on. Context travels as W3C ``traceparent`` in gRPC
metadata, written and read by OpenTelemetry's W3C TraceContext propagator.

The opentelemetry-instrumentation-grpc interceptors are not used: the node's one server
interceptor and one channel layer already wrap every call, and recording the span, the
metrics and the log lines' trace ID in that same place keeps the three in step.

Spans are always made, because every log line carries its trace ID. They leave the process
only where export is configured: ``otlp_endpoint`` in the node's config (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``) sends them over OTLP/gRPC in batches; ``trace_file``
appends each finished span to a file as one JSON object per line. A node that exports
nothing makes its spans non-recording: they carry and pass on the trace and span IDs (log
lines, ``traceparent``) and cost nothing more, since nobody would read what they record
(``_unexported``: the SDK is not involved at all).
A node that exports records every span, whatever its caller decided (``ALWAYS_ON``, not
parent-based), so one exporting node's part of a flow is whole even if its callers export
nothing; ``OTEL_TRACES_SAMPLER`` replaces that choice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from nodes.common import logs

TRACEPARENT_METADATA_KEY = "traceparent"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
INSTRUMENTATION_NAME = "suretynet"
# Codes that mean the server failed, not the caller (OpenTelemetry's gRPC conventions): only
# these mark a SERVER span as an error. A refusal is the flow working as designed.
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

_propagator = TraceContextTextMapPropagator()


class _Tracing:
    """This process's tracer provider; replaced once by ``configure`` in a node process."""

    def __init__(self) -> None:
        self.provider = TracerProvider()
        self.tracer = self.provider.get_tracer(INSTRUMENTATION_NAME)
        self.files: list[IO[str]] = []
        # False: spans are made as ``_unexported_span`` makes them, without the SDK.
        self.exporting = False


_state = _Tracing()


def _span_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + os.linesep


def configure(
    service_name: str, *, otlp_endpoint: str = "", trace_file: Path | None = None
) -> None:
    """Names this process's spans ``service_name`` and sets where they are exported.

    OTLP is used when ``otlp_endpoint`` or OTEL_EXPORTER_OTLP_ENDPOINT is set (an
    ``http://`` endpoint means a plaintext collector). One node per process exports: a
    second call replaces the first's exporters.
    """
    shutdown()
    exporting = bool(otlp_endpoint or os.environ.get(OTLP_ENDPOINT_ENV) or trace_file)
    sampler: sampling.Sampler | None = sampling.ALWAYS_OFF
    if exporting:
        # None: the SDK reads the operator's OTEL_TRACES_SAMPLER.
        sampler = None if os.environ.get(SAMPLER_ENV) else sampling.ALWAYS_ON
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=sampler
    )
    if otlp_endpoint or os.environ.get(OTLP_ENDPOINT_ENV):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    files: list[IO[str]] = []
    if trace_file is not None:
        trace_file.parent.mkdir(parents=True, exist_ok=True)
        out = trace_file.open("a", buffering=1)
        files.append(out)
        # Written as each span ends, so a reader sees a finished flow without a flush.
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_span_line))
        )
    _state.provider = provider
    _state.tracer = provider.get_tracer(INSTRUMENTATION_NAME)
    _state.files = files
    _state.exporting = exporting


def shutdown() -> None:
    """Exports what is still queued and closes the exporters (a node calls it on stop)."""
    _state.provider.shutdown()
    for out in _state.files:
        out.close()
    _state.files = []
    _state.provider = TracerProvider()
    _state.tracer = _state.provider.get_tracer(INSTRUMENTATION_NAME)
    _state.exporting = False


def _random_span_id() -> int:
    return random.getrandbits(64) or 1


def _random_trace_id() -> int:
    return random.getrandbits(128) or 1


_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_EMPTY_CONTEXT = otel_context.Context()


def context_for_trace(trace_id: str) -> otel_context.Context:
    """A context whose spans join the trace ``trace_id`` (a label is hashed to one).

    Used for work no traced call started: a resumer finishing a stored flow, a node's own
    enrolment, a caller that sent only the legacy trace label. The remote parent stands for
    the span that began the trace elsewhere; it is not exported from here.
    """
    return trace.set_span_in_context(NonRecordingSpan(_label_parent(trace_id)))


def _label_parent(trace_id: str) -> SpanContext:
    """The remote parent standing for the trace ``trace_id`` (see ``context_for_trace``)."""
    return SpanContext(
        trace_id=int(logs.trace_id_for(trace_id), 16),
        span_id=_random_span_id(),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


def traceparent_for(trace_id: str) -> str:
    """A ``traceparent`` value that starts the callee in trace ``trace_id`` (or its label's)."""
    return f"00-{logs.trace_id_for(trace_id)}-{_random_span_id():016x}-01"


@functools.lru_cache(maxsize=1024)
def _rpc_attributes(method: str) -> Mapping[str, Any]:
    # Methods come from the node's own tables and stubs: a small, fixed set.
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _incoming_parent(metadata: Mapping[str, str]) -> otel_context.Context | None:
    if TRACEPARENT_METADATA_KEY in metadata:
        extracted = _propagator.extract(carrier=metadata)
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    label = metadata.get(logs.TRACE_METADATA_KEY)
    if label:
        return context_for_trace(label)
    return None


# W3C Trace Context's traceparent, as OpenTelemetry's propagator matches it.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$"
)
_TRACEPARENT_MAX_LENGTH = 512
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _remote_parent(metadata: Mapping[str, str]) -> SpanContext | None:
    """The caller's span, as ``_incoming_parent`` reads it, without building contexts:
    what a node that exports nothing needs (the IDs and the sampled flag; no tracestate,
    which nothing records there)."""
    header = metadata.get(TRACEPARENT_METADATA_KEY)
    if header and len(header) <= _TRACEPARENT_MAX_LENGTH:
        match = _TRACEPARENT.search(header)
        if match is not None:
            version, trace_hex, span_hex, flags = match.group(1, 2, 3, 4)
            if (
                version != "ff"
                and not (version == "00" and match.group(5))
                and trace_hex != _ZERO_TRACE
                and span_hex != _ZERO_SPAN
            ):
                return SpanContext(
                    trace_id=int(trace_hex, 16),
                    span_id=int(span_hex, 16),
                    is_remote=True,
                    trace_flags=trace.TraceFlags(int(flags, 16)),
                )
    label = metadata.get(logs.TRACE_METADATA_KEY)
    return _label_parent(label) if label else None


class SpanScope:
    """One RPC's span, current from ``open_server_span``/``open_client_span`` until
    ``close``. Opened and closed by plain calls, not a generator context manager: every
    RPC and every call a node makes pays for this twice."""

    __slots__ = ("_scope", "_token", "span")

    def __init__(self, span: trace.Span, token: object, scope: Any = None) -> None:
        self.span = span
        self._token = token
        self._scope = scope

    def close(self, *exc_info: Any) -> None:
        """Makes the span no longer current (an exporting node's SDK span also ends)."""
        if self._scope is not None:
            self._scope.__exit__(*exc_info)
        else:
            otel_context.detach(self._token)  # type: ignore[arg-type]


def _unexported(parent: SpanContext | None, base: otel_context.Context | None) -> SpanScope:
    """The span of a process that exports nothing: the parent's trace (or a new one) and a
    new span ID, in a fraction of the SDK's time.

    Nobody reads what such a span would record, so there is no sampler, no attributes and
    no span processor to call; only its IDs matter, for log lines and ``traceparent``. The
    parent's sampled flag passes on as it came, as W3C Trace Context asks of a participant
    that records nothing, so a sampling node further on still sees the caller's decision.
    """
    span = NonRecordingSpan(
        SpanContext(
            trace_id=parent.trace_id if parent is not None else _random_trace_id(),
            span_id=_random_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags if parent is not None else _NOT_SAMPLED,
            trace_state=parent.trace_state if parent is not None else None,
        )
    )
    return SpanScope(span, otel_context.attach(trace.set_span_in_context(span, base)))


def _exported(method: str, parent: otel_context.Context | None, kind: SpanKind) -> SpanScope:
    scope = _state.tracer.start_as_current_span(
        method.lstrip("/"),
        context=parent,
        kind=kind,
        attributes=_rpc_attributes(method),
        record_exception=False,
        set_status_on_exception=False,
    )
    return SpanScope(scope.__enter__(), None, scope)


def open_server_span(method: str, metadata: Mapping[str, str]) -> SpanScope:
    """The SERVER span of one served RPC, current until closed; it continues the caller's
    trace."""
    if not _state.exporting:
        parent = _remote_parent(metadata)
        # As the propagator's extract: the caller's span in a context of its own.
        return _unexported(parent, _EMPTY_CONTEXT if parent is not None else None)
    return _exported(method, _incoming_parent(metadata), SpanKind.SERVER)


def open_client_span(method: str) -> SpanScope:
    """The CLIENT span of one outgoing call attempt, current until closed.

    Its parent is the current span; outside any span, the trace this task set in
    ``logs.trace_id_var`` (a resumed flow continues its own trace); else a new trace.
    """
    current = trace.get_current_span().get_span_context()
    label = "-" if current.is_valid else logs.trace_id_var.get()
    if not _state.exporting:
        if current.is_valid:
            return _unexported(current, None)
        return _unexported(_label_parent(label) if label != "-" else None, None)
    return _exported(method, context_for_trace(label) if label != "-" else None, SpanKind.CLIENT)


@contextlib.contextmanager
def _current(scope: SpanScope) -> Iterator[trace.Span]:
    try:
        yield scope.span
    except BaseException as error:
        scope.close(type(error), error, error.__traceback__)
        raise
    scope.close(None, None, None)


def server_span(
    method: str, metadata: Mapping[str, str]
) -> contextlib.AbstractContextManager[trace.Span]:
    """``open_server_span`` as a context manager."""
    return _current(open_server_span(method, metadata))


def client_span(method: str) -> contextlib.AbstractContextManager[trace.Span]:
    """``open_client_span`` as a context manager."""
    return _current(open_client_span(method))


def outgoing_metadata() -> list[tuple[str, str]]:
    """``traceparent`` for the current span, for a call made outside the channel layer."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return list(carrier.items())


def finish_span(span: trace.Span, code: grpc.StatusCode, reason: str = "", *, server: bool) -> None:
    """Records an RPC's status code and refusal reason on its span."""
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if reason:
        span.set_attribute("suretynet.reason", reason)
    if code != grpc.StatusCode.OK and (not server or code in SERVER_ERROR_CODES):
        span.set_status(Status(StatusCode.ERROR, f"{code.name} {reason}".strip()))


@contextlib.contextmanager
def internal_span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """An INTERNAL span around one step of local work, e.g. a resumer's pass."""
    with _state.tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
