"""Trace IDs: the W3C context a node continues, and the ID every log line carries."""

from __future__ import annotations

import contextvars
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from nodes.common import logs, telemetry

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def recording_provider(tmp_path):
    """Each test starts as a node that exports its spans (to a file), so they are the SDK's
    recorded spans, whose parents can be read; a test of a node that exports nothing
    configures that itself."""
    telemetry.configure("tests", trace_file=tmp_path / "recorded.jsonl")
    yield
    telemetry.shutdown()


def in_fresh_context(test):
    """Runs ``test`` in its own contextvars context, so no trace leaks between tests."""
    return contextvars.copy_context().run(test)


def span_trace_id(span: trace.Span) -> str:
    return trace.format_trace_id(span.get_span_context().trace_id)


def parent_of(span: trace.Span) -> trace.SpanContext | None:
    """The parent of an SDK span (the API's Span does not expose it)."""
    assert isinstance(span, ReadableSpan)
    return span.parent


def test_a_trace_id_is_kept_and_a_label_is_hashed_stably():
    assert logs.trace_id_for(CALLER_TRACE) == CALLER_TRACE
    hashed = logs.trace_id_for("enrol-shop-1")
    assert logs.is_trace_id(hashed) and hashed == logs.trace_id_for("enrol-shop-1")
    assert hashed != logs.trace_id_for("enrol-shop-2")
    assert not logs.is_trace_id("0" * 32)
    assert logs.is_trace_id(logs.new_trace_id())


def test_a_served_rpc_continues_the_callers_traceparent():
    def check() -> None:
        metadata = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        with telemetry.server_span("/suretynet.retail.v1.ShopService/PlaceOrder", metadata) as span:
            assert span_trace_id(span) == CALLER_TRACE
            assert logs.current_trace_id() == CALLER_TRACE
            parent = parent_of(span)
            assert parent is not None and parent.span_id == int(CALLER_SPAN, 16)
            with telemetry.client_span("/suretynet.approval.v1.DirectoryService/X") as child:
                assert span_trace_id(child) == CALLER_TRACE
                (key, value), *_ = telemetry.outgoing_metadata()
                sent_span = trace.format_span_id(child.get_span_context().span_id)
                assert (key, value) == ("traceparent", f"00-{CALLER_TRACE}-{sent_span}-01")

    in_fresh_context(check)


def test_a_legacy_trace_label_is_adopted_and_a_bare_call_starts_a_trace():
    def check() -> None:
        with telemetry.server_span("/m/Legacy", {logs.TRACE_METADATA_KEY: "trace-bug-1"}) as span:
            assert span_trace_id(span) == logs.trace_id_for("trace-bug-1")
        with telemetry.server_span("/m/Fresh", {}) as fresh:
            assert fresh.get_span_context().is_valid and parent_of(fresh) is None
        # A malformed traceparent is ignored, not trusted: a new trace begins.
        with telemetry.server_span("/m/Bad", {"traceparent": "00-zz-yy-01"}) as bad:
            assert parent_of(bad) is None

    in_fresh_context(check)


def test_work_outside_an_rpc_continues_the_trace_set_for_its_task():
    """A resumer sets the stored trace ID; its calls and log lines carry it."""

    def check() -> None:
        assert logs.current_trace_id() == "-"
        logs.trace_id_var.set(CALLER_TRACE)
        assert logs.current_trace_id() == CALLER_TRACE
        with telemetry.client_span("/m/Resume") as span:
            assert span_trace_id(span) == CALLER_TRACE
        logs.trace_id_var.set("resume-cancel-ON-1")
        assert logs.current_trace_id() == logs.trace_id_for("resume-cancel-ON-1")

    in_fresh_context(check)


def test_every_log_line_carries_the_current_spans_trace_id(capsys: pytest.CaptureFixture[str]):
    def check() -> None:
        logs.configure("retail/shop-1")
        try:
            metadata = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
            with telemetry.server_span("/m/Logged", metadata):
                logs.event(logging.getLogger("test"), "inside")
        finally:
            logging.getLogger().handlers.clear()

    in_fresh_context(check)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["msg"], line["trace_id"]) == ("inside", CALLER_TRACE)


def test_a_span_file_gets_one_json_span_per_line(tmp_path):
    path = tmp_path / "spans" / "shop-1.jsonl"
    telemetry.configure("retail/shop-1", trace_file=path)
    try:

        def check() -> None:
            with telemetry.server_span("/suretynet.retail.v1.ShopService/PlaceOrder", {}):
                pass

        in_fresh_context(check)
        (line,) = path.read_text().splitlines()
    finally:
        telemetry.shutdown()
    span = json.loads(line)
    assert span["name"] == "suretynet.retail.v1.ShopService/PlaceOrder"
    assert span["kind"] == "SpanKind.SERVER"
    assert span["resource"]["attributes"]["service.name"] == "retail/shop-1"
    assert span["attributes"]["rpc.system"] == "grpc"


def test_a_node_that_exports_nothing_passes_ids_on_without_recording(tmp_path):
    """No exporter: spans are non-recording but carry the caller's trace and fresh span IDs
    (log lines, traceparent). With a trace file: every span is recorded, even under a
    caller that recorded nothing (traceparent flags 00)."""

    def check() -> None:
        telemetry.configure("retail/shop-1")
        try:
            metadata = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
            with telemetry.server_span("/m/Quiet", metadata) as span:
                assert not span.is_recording()
                assert logs.current_trace_id() == CALLER_TRACE
                with telemetry.client_span("/m/Next") as child:
                    (_, value), *_ = telemetry.outgoing_metadata()
                    sent_span = trace.format_span_id(child.get_span_context().span_id)
                    assert sent_span != CALLER_SPAN
                    # The caller's sampled flag passes on as it came (W3C Trace Context).
                    assert value == f"00-{CALLER_TRACE}-{sent_span}-01"
            unsampled = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"}
            with telemetry.server_span("/m/Quiet", unsampled), telemetry.client_span("/m/N"):
                (_, value), *_ = telemetry.outgoing_metadata()
                assert value.startswith(f"00-{CALLER_TRACE}-") and value.endswith("-00")
            with telemetry.server_span("/m/Fresh", {}) as fresh:
                started = fresh.get_span_context()
                assert started.is_valid and not started.trace_flags.sampled
                assert logs.current_trace_id() == trace.format_trace_id(started.trace_id)
            assert not trace.get_current_span().get_span_context().is_valid
            telemetry.configure("retail/shop-1", trace_file=tmp_path / "spans.jsonl")
            with telemetry.server_span("/m/Exported", unsampled) as exported:
                assert exported.is_recording() and span_trace_id(exported) == CALLER_TRACE
        finally:
            telemetry.shutdown()
        assert json.loads((tmp_path / "spans.jsonl").read_text())["name"] == "m/Exported"

    in_fresh_context(check)


_HEX = "0123456789abcdef"
_traceparents = st.one_of(
    st.builds(
        lambda version, trace_id, span_id, flags, tail, pad: (
            f"{pad}{version}-{trace_id}-{span_id}-{flags}{tail}{pad}"
        ),
        st.sampled_from(["00", "01", "ff", "0g", "cc"]),
        st.sampled_from(["0" * 32, CALLER_TRACE, "4BF92F3577B34DA6A3CE929D0E0E4736"])
        | st.text(_HEX, min_size=31, max_size=33),
        st.sampled_from(["0" * 16, CALLER_SPAN]) | st.text(_HEX, min_size=15, max_size=17),
        st.sampled_from(["00", "01", "ff", "x1"]),
        st.sampled_from(["", "-", "-extra", " "]),
        st.sampled_from(["", " ", "\t"]),
    ),
    st.text(max_size=80),
)


@given(_traceparents, st.sampled_from(["", "trace-label-1"]))
def test_a_node_that_exports_nothing_reads_traceparent_as_the_propagator_does(value, label):
    """The fast reading of a node that exports nothing (``_remote_parent``) finds the same
    caller as OpenTelemetry's W3C propagator (``_incoming_parent``), or none, for any
    header, well-formed or not; the legacy label applies only when traceparent does not."""
    metadata = {"traceparent": value}
    if label:
        metadata[logs.TRACE_METADATA_KEY] = label
    expected = telemetry._incoming_parent(metadata)
    found = telemetry._remote_parent(metadata)
    if expected is None:
        assert found is None
        return
    wanted = trace.get_current_span(expected).get_span_context()
    assert found is not None
    assert (found.trace_id, found.trace_flags, found.is_remote) == (
        wanted.trace_id,
        wanted.trace_flags,
        wanted.is_remote,
    )
    # The caller's own span ID when traceparent named it; the label's is made up each time.
    if not label or wanted.trace_id != int(logs.trace_id_for(label), 16):
        assert found.span_id == wanted.span_id
