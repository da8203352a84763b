"""What metrics and tracing cost per RPC, side by side in one run (CPU time, not wall time).

- ``call``: a grpc.aio unary call to a health server in this process, with a metadata item
  as every node-to-node call carries, against the same call through ``observed_call`` (the
  CLIENT span, ``traceparent`` and the latency histogram every outgoing node call gets);
- ``server span``: the SERVER span plus histogram the interceptor adds to every served RPC;
- ``span file``: the same with each span written to a trace file (``trace_file``).

Each figure is the lowest of several rounds (CPU microseconds per call), so that other load
on the machine inflates it as little as possible. A purchase is about ten node-to-node calls
and eleven served RPCs (docs/OPERATIONS.md, Performance).

    .venv/bin/python scripts/bench_observability.py [--calls 3000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402

from nodes.common import metrics, telemetry  # noqa: E402
from nodes.common.channels import observed_call  # noqa: E402

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
METHOD = "/grpc.health.v1.Health/Check"


async def calls_cpu_us(calls: int, observed: bool) -> float:
    """CPU microseconds per call (client and server, both in this process)."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    metadata = [("x-suretynet-license-key", "k" * 43)]
    request = health_pb2.HealthCheckRequest()

    async def call() -> object:
        if observed:
            return await observed_call(stub.Check, request, metadata=metadata)
        return await stub.Check(request, metadata=metadata)

    for _ in range(100):
        await call()
    began = time.process_time()
    for _ in range(calls):
        await call()
    spent = time.process_time() - began
    await channel.close(None)
    await server.stop(None)
    return spent / calls * 1e6


def served_cpu_us(calls: int) -> float:
    began = time.process_time()
    for _ in range(calls):
        with telemetry.server_span(METHOD, {"traceparent": TRACEPARENT}) as span:
            metrics.RPC_SERVED.labels(method=METHOD, code="OK").observe(0.001)
            telemetry.finish_span(span, grpc.StatusCode.OK, server=True)
    return (time.process_time() - began) / calls * 1e6


def lowest(rounds: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    plain: list[float] = []
    observed: list[float] = []
    for _ in range(args.rounds):
        # Interleaved, so that a burst of load elsewhere hits both alike.
        plain.append(asyncio.run(calls_cpu_us(args.calls, observed=False)))
        observed.append(asyncio.run(calls_cpu_us(args.calls, observed=True)))
    server_span = lowest(args.rounds, lambda: served_cpu_us(args.calls))
    with tempfile.TemporaryDirectory() as directory:
        telemetry.configure("bench", trace_file=Path(directory) / "spans.jsonl")
        try:
            span_file = lowest(args.rounds, lambda: served_cpu_us(args.calls))
        finally:
            telemetry.shutdown()
    print(f"CPU microseconds per call, lowest of {args.rounds} rounds of {args.calls}")
    print(f"{'call (plain)':<28}{min(plain):>8.0f}")
    print(f"{'call (observed_call)':<28}{min(observed):>8.0f}   +{min(observed) - min(plain):.0f}")
    print(f"{'server span + histogram':<28}{server_span:>8.0f}")
    print(f"{'server span, to a file':<28}{span_file:>8.0f}   +{span_file - server_span:.0f}")


if __name__ == "__main__":
    main()
