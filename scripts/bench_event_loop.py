"""Measures how much database work stalls a node's event loop, side by side.

A real approval node (mutual TLS, SQLite with durable commits) serves a burst of mutating
RPCs (IssueProgramSerial: one transaction each, with its idempotency key) while a ticker
coroutine in the same loop wakes every 5 ms and records how late it woke. Two runs:

- ``executor``: the shipped design, every Peewee call on the Store's database thread;
- ``inline``: the same node with Store.run patched to run the work on the event loop.

Prints the loop lag percentiles and the throughput of each, and their ratio.

    .venv/bin/python scripts/bench_event_loop.py [--requests 400] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc  # noqa: E402
from suretynet.type.v1 import types_pb2  # noqa: E402

from nodes.network.inprocess import Pki, node_config, running  # noqa: E402
from storage.common.database import Store  # noqa: E402

TICK_S = 0.005


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        planned = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lags.append(max(0.0, time.perf_counter() - planned))


async def measure(mode: str, requests: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        ca = Pki(tmp / "pki")
        original = Store.run
        if mode == "inline":

            async def inline(self: Store, work: Any) -> Any:
                return self._in_transaction(work)

            Store.run = inline  # type: ignore[method-assign]
        try:
            async with running(node_config(tmp, ca, "approval", "institution")) as node:
                async with ca.channel(node.runtime.address) as channel:
                    stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
                    await stub.ListEntities(approval_pb2.ListEntitiesRequest(), timeout=10)
                    lags: list[float] = []
                    stop = asyncio.Event()
                    ticker = asyncio.ensure_future(_ticker(lags, stop))
                    queue = iter(range(requests))

                    async def worker() -> None:
                        for number in queue:
                            await stub.IssueProgramSerial(
                                approval_pb2.IssueProgramSerialRequest(
                                    request_id=f"bench-{mode}-{number}",
                                    role=types_pb2.ROLE_RETAIL,
                                    note="bench",
                                ),
                                timeout=30,
                            )

                    started = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                    elapsed = time.perf_counter() - started
                    stop.set()
                    await ticker
        finally:
            Store.run = original  # type: ignore[method-assign]
    lags_ms = sorted(lag * 1000 for lag in lags)
    return {
        "mode": mode,
        "requests_per_s": requests / elapsed,
        "lag_p50_ms": statistics.median(lags_ms),
        "lag_p99_ms": lags_ms[int(len(lags_ms) * 0.99) - 1],
        "lag_max_ms": lags_ms[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    results = [
        asyncio.run(measure(mode, args.requests, args.concurrency))
        for mode in ("executor", "inline")
    ]
    print(
        f"{args.requests} IssueProgramSerial calls, {args.concurrency} in flight, "
        "SQLite WAL + synchronous=FULL, mutual TLS"
    )
    print(f"{'mode':<10}{'req/s':>10}{'lag p50 ms':>12}{'lag p99 ms':>12}{'lag max ms':>12}")
    for result in results:
        print(
            f"{result['mode']:<10}{result['requests_per_s']:>10.0f}{result['lag_p50_ms']:>12.2f}"
            f"{result['lag_p99_ms']:>12.2f}{result['lag_max_ms']:>12.2f}"
        )
    executor, inline = results
    print(
        f"loop lag p99, inline / executor: "
        f"{inline['lag_p99_ms'] / max(executor['lag_p99_ms'], 1e-6):.1f}x"
    )
    print(
        f"throughput, executor / inline: "
        f"{executor['requests_per_s'] / inline['requests_per_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
