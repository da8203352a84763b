"""The limit ``suretynet bench`` measures SuretyNet against: a bare grpc.aio unary echo.

Two processes, each started by the bench:

    python -m nodes.network.bench_echo serve --ca CA --cert CERT --key KEY
    python -m nodes.network.bench_echo client --ca CA --cert CERT --key KEY \\
        --target HOST:PORT --payload-bytes N

The server answers every call with the bytes it received, over mutual TLS (it requires a
client certificate from the CA, as every node does), and prints ``{"address": ...}`` once
it serves. The client runs the load phases of nodes/network/bench_driver.py. Neither
imports any of SuretyNet's node code: this is gRPC, TLS and HTTP/2 alone, the floor every
node-to-node call stands on. The service is generic (no proto of the product).

With ``--durable DIR`` the server first stores each request in a SQLite database in DIR,
one durable commit per call (WAL, synchronous=FULL) on a thread of its own, as a node's
database thread does: the floor of any RPC that must not forget what it answered
(scripts/bench_commit_floor.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from nodes.network.bench_driver import LOOPS, Call, run_on, serve_commands

SERVICE = "suretynet.bench.Echo"
METHOD = f"/{SERVICE}/Echo"
CALL_TIMEOUT_S = 30.0


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


class Journal:
    """Stores each request with one durable SQLite commit, on a thread of its own.

    Standard library only: a WAL database with synchronous=FULL (the nodes' settings), a
    queue to the thread, and the answer handed back with ``call_soon_threadsafe``.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._database = sqlite3.connect(
            directory / "echo.db", isolation_level=None, check_same_thread=False
        )
        self._database.execute("PRAGMA journal_mode=WAL")
        self._database.execute("PRAGMA synchronous=FULL")
        self._database.execute(
            "CREATE TABLE IF NOT EXISTS request (id INTEGER PRIMARY KEY, body BLOB NOT NULL)"
        )
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="journal", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()

    def _store(self, body: bytes) -> None:
        self._database.execute("BEGIN")
        try:
            self._database.execute("INSERT INTO request (body) VALUES (?)", (body,))
            self._database.execute("COMMIT")
        except sqlite3.Error:
            if self._database.in_transaction:
                self._database.execute("ROLLBACK")
            raise

    async def store(self, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if stored.done():  # The call was cancelled meanwhile.
                return
            if error is None:
                stored.set_result(None)
            else:
                stored.set_exception(error)

        def job() -> None:
            try:
                self._store(body)
            except Exception as error:
                # The call fails (UNKNOWN at the client) instead of waiting forever.
                loop.call_soon_threadsafe(settle, error)
            else:
                loop.call_soon_threadsafe(settle, None)

        self._jobs.put(job)
        await stored


def _handler(journal: Journal | None) -> Callable[..., Awaitable[bytes]]:
    if journal is None:
        return _echo

    async def durable_echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await journal.store(request)
        return request

    return durable_echo


async def serve(ca: Path, cert: Path, key: Path, address: str, durable: Path | None) -> None:
    """Serves the echo until SIGTERM or SIGINT; prints its bound address first."""
    server = grpc.aio.server()
    handler = _handler(Journal(durable) if durable is not None else None)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca.read_bytes(),
        require_client_auth=True,
    )
    host = address.rpartition(":")[0]
    port = server.add_secure_port(address, credentials)
    await server.start()
    print(json.dumps({"address": f"{host}:{port}", "pid": os.getpid()}), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(None)


async def client(ca: Path, cert: Path, key: Path, target: str, payload_bytes: int) -> None:
    """Loads the echo at ``target`` with ``payload_bytes``-byte requests, on command."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    payload = os.urandom(payload_bytes)
    async with grpc.aio.secure_channel(target, credentials) as channel:
        echo = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

        async def call(number: int) -> None:
            await echo(payload, timeout=CALL_TIMEOUT_S)

        def make_call(command: dict[str, Any]) -> Call:
            return call

        await serve_commands(make_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", choices=["serve", "client"])
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--address", default="127.0.0.1:0", help="serve: where to listen")
    parser.add_argument(
        "--durable", type=Path, help="serve: store each request durably in this directory first"
    )
    parser.add_argument("--target", help="client: the echo server's address")
    parser.add_argument("--payload-bytes", type=int, default=256, help="client: request size")
    parser.add_argument("--loop", choices=LOOPS, default="uvloop", help="the event loop")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        run_on(args.loop, serve(args.ca, args.cert, args.key, args.address, args.durable))
        return 0
    if not args.target:
        parser.error("client needs --target")
    if not 0 <= args.payload_bytes <= 1_000_000:
        parser.error("--payload-bytes must be between 0 and 1000000")
    run_on(args.loop, client(args.ca, args.cert, args.key, args.target, args.payload_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
