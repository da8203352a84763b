"""How fast an RPC can be that durably stores what it answered, beside the bare echo.

Two echo servers of ``suretynet bench`` (nodes/network/bench_echo.py), each its own
process, over the same mutual TLS: the bare echo, and the same echo that first stores the
request with one durable SQLite commit (WAL, synchronous=FULL) on a thread of its own, as
a node's database thread does. Neither runs any of SuretyNet's own code. This process is
their client; it calls them in turn, in rounds, at the same concurrency and payload, and
prints each server's CPU per call (user + system, from /proc) and calls per second.

The ratio of the two rates is the most efficiency ``suretynet bench`` could report for a
network whose RPCs each made one durable commit and did nothing else (docs/PERFORMANCE.md,
"Why the CPU and efficiency targets are still missed").

    .venv/bin/python scripts/bench_commit_floor.py [--calls 6000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from nodes.common import pki  # noqa: E402
from nodes.network.bench import cpu_per_call, issue_echo_certificates  # noqa: E402
from nodes.network.bench_driver import side_by_side_arguments  # noqa: E402
from nodes.network.bench_echo import METHOD  # noqa: E402

WARM_UP_CALLS = 200
READY_TIMEOUT_S = 30
# The size of the bench's echo requests (a purchase's mean inter-node request).
PAYLOAD_BYTES = 148


class EchoServer:
    """One ``bench_echo serve`` process; ``durable`` stores each request first."""

    def __init__(self, files: dict[str, Path], durable: Path | None) -> None:
        command = [sys.executable, "-m", "nodes.network.bench_echo", "serve"]
        command += ["--ca", str(files["ca"]), "--cert", str(files["cert"])]
        command += ["--key", str(files["key"])]
        if durable is not None:
            command += ["--durable", str(durable)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        started = json.loads(self.process.stdout.readline() or "{}")
        if "address" not in started:
            self.stop()
            raise RuntimeError("the echo server did not start; see its output above")
        self.address: str = started["address"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def measure(
    server: EchoServer, credentials: grpc.ChannelCredentials, calls: int, concurrency: int
) -> tuple[float, float]:
    """The server's microseconds of CPU per call, and calls per second."""
    payload = os.urandom(PAYLOAD_BYTES)
    async with grpc.aio.secure_channel(server.address, credentials) as channel:
        echo = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return await cpu_per_call(
            server.process.pid,
            lambda: echo(payload, timeout=30),
            calls,
            concurrency,
            WARM_UP_CALLS,
        )


def certificates(directory: Path) -> tuple[dict[str, Path], grpc.ChannelCredentials]:
    """A CA, the servers' certificate and the client's credentials."""
    pki.init_ca(directory)
    server, client = issue_echo_certificates(directory, directory)
    ca = directory / "ca.pem"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key_path.read_bytes(),
        certificate_chain=client.cert_path.read_bytes(),
    )
    return {"ca": ca, "cert": server.cert_path, "key": server.key_path}, credentials


async def main(calls: int, concurrency: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        files, credentials = certificates(directory)
        servers = {"echo": EchoServer(files, None)}
        try:
            servers["durable"] = EchoServer(files, directory / "journal")
            rates: dict[str, list[float]] = {name: [] for name in servers}
            print(f"{calls} calls at {concurrency} in flight, {PAYLOAD_BYTES}-byte requests")
            print(f"{'round':<6}{'server':<10}{'us CPU/call':>12}{'calls/s':>10}")
            for number in range(1, rounds + 1):
                for name, server in servers.items():
                    per_call, rate = await measure(server, credentials, calls, concurrency)
                    rates[name].append(rate)
                    print(f"{number:<6}{name:<10}{per_call:>12.0f}{rate:>10.0f}")
            ratio = statistics.median(rates["durable"]) / statistics.median(rates["echo"])
            print(f"durable / echo calls/s: {ratio:.2f}")
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    arguments = side_by_side_arguments(__doc__, calls=6000, concurrency=32)
    import uvloop

    # The nodes' event loop, for the client too (as the bench's echo client).
    uvloop.run(main(*arguments))
