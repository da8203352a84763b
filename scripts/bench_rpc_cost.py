"""What one served RPC costs a running node, beside what gRPC alone costs it.

A local network (every node its own process, mutual TLS, SQLite with durable commits)
makes one purchase; then this process calls verification, side by side in rounds:

- ``health``: ``grpc.health.v1.Health/Check``, which the node interceptor passes through:
  gRPC's own work per call, over the same channel;
- ``get_report``: ``VerificationService/GetTransactionReport`` for that order, through
  the whole path: admission (operator certificate), the span, metrics, the audit line, one
  indexed database read on the database thread, the answer.

Verification's CPU per call (user + system, from /proc) is what it prints; the difference
between the two rows is SuretyNet's own cost of one read-only RPC (docs/PERFORMANCE.md,
"Why the CPU and efficiency targets are still missed").

    .venv/bin/python scripts/bench_rpc_cost.py [--calls 4000] [--concurrency 8] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from suretynet.verification.v1 import verification_pb2, verification_pb2_grpc  # noqa: E402

from nodes.member.client import AgencyClient, ShopClient  # noqa: E402
from nodes.network.bench import cpu_per_call  # noqa: E402
from nodes.network.bench_driver import side_by_side_arguments  # noqa: E402
from nodes.network.demo_data import members_of  # noqa: E402
from nodes.network.local import LocalNetwork, start_network  # noqa: E402


async def one_order(network: LocalNetwork) -> str:
    """A demo member of agency-1 buys once at shop-1; the order number."""
    member = members_of("agency-1")[0]
    ca = network.ca.read_bytes()
    async with AgencyClient(network.node("agency-1").member_address, ca) as client:
        await client.login(member.member_id, member.password)
        anonymous = (await client.anonymous_user_id("shop-1")).anonymous_user_id.value
    async with ShopClient(network.node("shop-1").member_address, ca) as shop:
        order = await shop.place_order(anonymous, [("tea", 1)], request_id="rpc-cost-order")
    return str(order.order_number)


async def main(calls: int, concurrency: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        network = await start_network(Path(directory))
        try:
            order_number = await one_order(network)
            verification = network.node("verification")
            pid = verification.pid or verification.process.pid
            async with network.admin_channel(verification.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reports = verification_pb2_grpc.VerificationServiceStub(channel)
                report = verification_pb2.GetTransactionReportRequest(order_number=order_number)
                measured: dict[str, Callable[[], Awaitable[Any]]] = {
                    "health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10),
                    "get_report": lambda: reports.GetTransactionReport(report, timeout=10),
                }
                print(f"verification's CPU per call, {calls} calls at {concurrency} in flight")
                print(f"{'round':<6}{'rpc':<12}{'us CPU/call':>12}{'calls/s':>10}")
                for number in range(1, rounds + 1):
                    for name, call in measured.items():
                        per_call, rate = await cpu_per_call(pid, call, calls, concurrency)
                        print(f"{number:<6}{name:<12}{per_call:>12.0f}{rate:>10.0f}")
        finally:
            network.stop()


if __name__ == "__main__":
    asyncio.run(main(*side_by_side_arguments(__doc__, calls=4000, concurrency=8)))
