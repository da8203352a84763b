"""Side-by-side latency of SuretyNet calls against a bare gRPC echo, in one run.

Everything runs on this machine over real sockets with the same mutual TLS:

- ``echo``: a bare grpc.aio server returning the request bytes (the floor: TLS + HTTP/2);
- ``directory``: approval's GetPaymentInformation (a shop asking for its own) through the
  full node stack (interceptor, identity, license key, address correlation, a SQLite read);
- ``enrol-change``: a mutating RPC (ChangeRetailEntityInformation) with its idempotency key
  and a durable SQLite commit;
- flows registered in ``FLOWS`` by later issues (the purchase, the cancellation, ...).

Prints per-call latency percentiles and each one's ratio to the echo median.

    .venv/bin/python scripts/bench_flows.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc  # noqa: E402
from suretynet.type.v1 import types_pb2  # noqa: E402

from nodes.common import tls  # noqa: E402
from nodes.common.channels import LICENSE_KEY_METADATA_KEY  # noqa: E402
from nodes.network.inprocess import Pki, node_config, running  # noqa: E402

Call = Callable[[int], Awaitable[object]]
# In flight at once for the throughput figures.
CONCURRENCY = 8
# name -> completed calls per second with CONCURRENCY in flight (filled as the run goes).
THROUGHPUT: dict[str, float] = {}


async def throughput(name: str, call: Call, calls: int) -> None:
    """``calls`` calls with CONCURRENCY in flight; records calls per second under ``name``."""
    numbers = iter(range(calls))

    async def worker() -> None:
        for number in numbers:
            await call(number)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    THROUGHPUT[name] = calls / (time.perf_counter() - started)


async def timed(name: str, call: Call, calls: int) -> tuple[str, list[float]]:
    for warmup in range(10):
        await call(-1 - warmup)
    samples = []
    for number in range(calls):
        started = time.perf_counter()
        await call(number)
        samples.append((time.perf_counter() - started) * 1000)
    return name, samples


async def echo_server(ca: Pki) -> tuple[grpc.aio.Server, str]:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    files = ca.issue("approval", "echo")
    port = server.add_secure_port("127.0.0.1:0", tls.node_server_credentials(files))
    await server.start()
    return server, f"127.0.0.1:{port}"


async def run(calls: int) -> list[tuple[str, list[float]]]:
    results = []
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        ca = Pki(tmp / "pki")
        server, address = await echo_server(ca)
        async with ca.channel(address, "retail", "shop-1") as channel:
            echo = channel.unary_unary(
                "/bench.Echo/Echo", request_serializer=None, response_deserializer=None
            )
            payload = approval_pb2.GetRelatedRetailEntityInformationRequest(
                retail_entity_id="shop-1"
            ).SerializeToString()
            results.append(await timed("echo", lambda _: echo(payload, timeout=10), calls))
            await throughput("echo", lambda _: echo(payload, timeout=10), calls)
        await server.stop(None)

        async with running(node_config(tmp, ca, "approval", "institution")) as approval:
            target = approval.runtime.address
            async with ca.channel(target) as admin_channel:
                serial = (
                    await approval_pb2_grpc.ApprovalAdminServiceStub(
                        admin_channel
                    ).IssueProgramSerial(
                        approval_pb2.IssueProgramSerialRequest(
                            request_id="bench", role=types_pb2.ROLE_RETAIL
                        ),
                        timeout=10,
                    )
                ).program_serial.serial
            async with ca.channel(target, "retail", "shop-1") as channel:
                enrollment = approval_pb2_grpc.EnrollmentServiceStub(channel)
                registered = await enrollment.RegisterEntity(
                    approval_pb2.RegisterEntityRequest(
                        request_id="bench-register",
                        program_serial=serial,
                        role=types_pb2.ROLE_RETAIL,
                        entity_id="shop-1",
                        display_name="Shop",
                        address="127.0.0.1:1",
                        discovery_variant=types_pb2.DISCOVERY_VARIANT_DIRECTORY,
                        accepted_payment_methods=[types_pb2.PAYMENT_METHOD_SINGLE_PAYMENT],
                    ),
                    timeout=10,
                )
                metadata = [(LICENSE_KEY_METADATA_KEY, registered.license_key)]
                directory_stub = approval_pb2_grpc.DirectoryServiceStub(channel)
                results.append(
                    await timed(
                        "directory",
                        lambda _: directory_stub.GetPaymentInformation(
                            approval_pb2.GetPaymentInformationRequest(retail_entity_id="shop-1"),
                            metadata=metadata,
                            timeout=10,
                        ),
                        calls,
                    )
                )
                results.append(
                    await timed(
                        "enrol-change",
                        lambda number: enrollment.ChangeRetailEntityInformation(
                            approval_pb2.ChangeRetailEntityInformationRequest(
                                request_id=f"bench-change-{number}",
                                entity_id="shop-1",
                                change=approval_pb2.RetailEntityInformationChange(
                                    display_name=f"Shop {number}"
                                ),
                            ),
                            metadata=metadata,
                            timeout=10,
                        ),
                        calls,
                    )
                )
    for flow in FLOWS.values():
        results.append(await flow(calls))
    return results


async def purchase(calls: int) -> tuple[str, list[float]]:
    """Whole purchases (steps 4-11: five nodes, each its own process) timed at the member.

    One PlaceOrder is: shop -> approval (directory search), shop -> agency (billing agency
    identification search), agency -> approval (retail entity identification), agency ->
    verification (transaction report), shop -> approval (transaction verification, which
    reads verification's report), and every durable write on the way.
    """
    from suretynet.settlement.v1 import settlement_pb2, settlement_pb2_grpc

    from nodes.member.client import AgencyClient, ShopClient
    from nodes.network.local import start_network

    with tempfile.TemporaryDirectory() as directory:
        network = await start_network(Path(directory))
        try:
            agency = network.node("agency-1")
            async with network.admin_channel(agency.address) as channel:
                await settlement_pb2_grpc.SettlementAdminServiceStub(channel).EnrollMember(
                    settlement_pb2.EnrollMemberRequest(
                        request_id="bench-member",
                        member_id="bench",
                        display_name="Bench",
                        password="bench-password",
                        credit_limit=types_pb2.Money(amount_minor=10**12, currency_code="USD"),
                    ),
                    timeout=10,
                )
            ca_pem = network.ca.read_bytes()
            async with AgencyClient(agency.member_address, ca_pem) as member:
                await member.login("bench", "bench-password")
                issued = await member.anonymous_user_id("shop-1")
            anonymous_id = issued.anonymous_user_id.value
            async with ShopClient(network.node("shop-1").member_address, ca_pem) as shop:
                measured = await timed(
                    "purchase",
                    lambda number: shop.place_order(
                        anonymous_id, [("tea", 1)], request_id=f"bench-purchase-{number}"
                    ),
                    calls,
                )
                await throughput(
                    "purchase",
                    lambda number: shop.place_order(
                        anonymous_id, [("tea", 1)], request_id=f"bench-concurrent-{number}"
                    ),
                    calls,
                )
                return measured
        finally:
            network.stop()


# Whole-flow measurements: name -> coroutine(calls).
FLOWS: dict[str, Callable[[int], Awaitable[tuple[str, list[float]]]]] = {"purchase": purchase}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    results = asyncio.run(run(args.calls))
    echo_median = statistics.median(results[0][1])
    print(f"{args.calls} sequential calls each, mutual TLS on 127.0.0.1, SQLite synchronous=FULL")
    print(f"{'call':<16}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'x echo p50':>12}")
    for name, samples in results:
        ordered = sorted(samples)
        p50 = statistics.median(ordered)
        p90 = ordered[int(len(ordered) * 0.9) - 1]
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        print(f"{name:<16}{p50:>9.2f}{p90:>9.2f}{p99:>9.2f}{p50 / echo_median:>12.1f}")
    print()
    print(f"throughput with {CONCURRENCY} in flight ({args.calls} calls each)")
    for name, per_s in THROUGHPUT.items():
        print(
            f"{name:<16}{per_s:>9.0f} per second{THROUGHPUT['echo'] / per_s:>9.1f}x fewer than echo"
        )


if __name__ == "__main__":
    main()
