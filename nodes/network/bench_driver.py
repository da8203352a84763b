"""The load loop every ``suretynet bench`` client process runs: phases on command, figures back.

A client process (the echo client, nodes/network/bench_echo.py, or the purchase client,
nodes/network/bench_load.py) reads one JSON command per line on stdin and answers each with
one JSON line on stdout:

- ``{"mode": "closed", "concurrency": N, "duration_s": D}``: N workers, each issuing its
  next call as soon as its last one answered, until D seconds have passed; the calls in
  flight then finish and count;
- ``{"mode": "open", "rate_per_s": R, "duration_s": D, "max_in_flight": M}``: a call is due
  every 1/R seconds whatever the answers do (at most M in flight; a due call waits for a
  free slot). Latency is measured from when this process sent the call, waiting for a
  slot included, so that a queue building up in the system shows in it; how late the
  process itself sent each call (its own scheduling on a busy machine) is reported apart,
  as ``send_lag_ms``;
- ``{"mode": "count", "calls": N, "concurrency": C}``: exactly N calls (the warm-up);
- ``{"stop": true}`` ends the process.

Each answer: ``calls`` (answered without error), ``errors`` by status code, ``elapsed_s``
from the first call to the last answer, ``latency_ms`` (p50, p95, p99, max, mean of the
answered calls) and ``cpu_s`` (this process's own CPU time during the phase).

Standard library only (and uvloop, the event loop the nodes run on), so that the echo
client carries none of SuretyNet's code.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

# Called with a number unique within the process (request IDs derive from it).
Call = Callable[[int], Awaitable[object]]
LOOPS = ("uvloop", "asyncio")

MAX_CONCURRENCY = 1024
MAX_DURATION_S = 3600.0
MAX_CALLS = 1_000_000


class CommandError(ValueError):
    """A command the loop cannot run; its message names the field at fault."""


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latency * 1000 for latency in latencies_s)
    return {
        "p50": round(percentile(ordered, 0.50), 3),
        "p95": round(percentile(ordered, 0.95), 3),
        "p99": round(percentile(ordered, 0.99), 3),
        "max": round(ordered[-1], 3) if ordered else 0.0,
        "mean": round(sum(ordered) / len(ordered), 3) if ordered else 0.0,
        # Below 100 answers the nearest-rank p99 is the maximum: one stall decides it.
        "count": len(ordered),
    }


def _error_name(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if callable(code):
        name = getattr(code(), "name", None)
        if name:
            return str(name)
    return type(error).__name__


class Recorder:
    """Latencies and errors of one phase."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        # Open loop: how late this process sent each call (its own scheduling, not the
        # server's): a large lag means the client could not keep the offered rate.
        self.send_lags_s: list[float] = []
        self.errors: Counter[str] = Counter()
        self.first_error = ""

    async def timed(self, call: Call, number: int, started: float) -> None:
        try:
            await call(number)
        except Exception as error:
            self.errors[_error_name(error)] += 1
            if not self.first_error:
                self.first_error = f"{_error_name(error)}: {error}"[:300]
            return
        self.latencies_s.append(time.perf_counter() - started)

    def result(self, elapsed_s: float, cpu_s: float) -> dict[str, Any]:
        return {
            "calls": len(self.latencies_s),
            "errors": dict(self.errors),
            "first_error": self.first_error,
            "elapsed_s": round(elapsed_s, 4),
            "latency_ms": summary_ms(self.latencies_s),
            "cpu_s": round(cpu_s, 4),
            "send_lag_ms": summary_ms(self.send_lags_s) if self.send_lags_s else None,
        }


def _number(command: dict[str, Any], name: str, low: float, high: float) -> float:
    value = command.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CommandError(f"{name}: a number is required")
    if not low <= value <= high:
        raise CommandError(f"{name}: must be between {low} and {high}")
    return float(value)


async def closed_loop(
    call: Call, numbers: itertools.count[int], concurrency: int, duration_s: float
) -> tuple[Recorder, float]:
    recorder = Recorder()
    started = time.perf_counter()
    deadline = started + duration_s

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await recorder.timed(call, next(numbers), time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return recorder, time.perf_counter() - started


async def open_loop(
    call: Call,
    numbers: itertools.count[int],
    rate_per_s: float,
    duration_s: float,
    max_in_flight: int,
) -> tuple[Recorder, float]:
    recorder = Recorder()
    slots = asyncio.Semaphore(max_in_flight)
    interval_s = 1.0 / rate_per_s
    started = time.perf_counter()
    due_count = max(1, int(duration_s * rate_per_s))
    tasks = []

    async def one(sent: float) -> None:
        async with slots:
            await recorder.timed(call, next(numbers), sent)

    for index in range(due_count):
        due = started + index * interval_s
        wait_s = due - time.perf_counter()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        sent = time.perf_counter()
        recorder.send_lags_s.append(sent - due)
        tasks.append(asyncio.ensure_future(one(sent)))
    await asyncio.gather(*tasks)
    return recorder, time.perf_counter() - started


async def counted(
    call: Call, numbers: itertools.count[int], calls: int, concurrency: int
) -> tuple[Recorder, float]:
    recorder = Recorder()
    remaining = iter(range(calls))
    started = time.perf_counter()

    async def worker() -> None:
        for _ in remaining:
            await recorder.timed(call, next(numbers), time.perf_counter())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return recorder, time.perf_counter() - started


async def run_phase(
    call: Call, numbers: itertools.count[int], command: dict[str, Any]
) -> dict[str, Any]:
    """Runs one command (see the module docstring); raises CommandError for a bad one."""
    mode = command.get("mode")
    cpu_before = time.process_time()
    if mode == "closed":
        concurrency = int(_number(command, "concurrency", 1, MAX_CONCURRENCY))
        duration_s = _number(command, "duration_s", 0.01, MAX_DURATION_S)
        recorder, elapsed_s = await closed_loop(call, numbers, concurrency, duration_s)
    elif mode == "open":
        rate = _number(command, "rate_per_s", 0.01, 1_000_000)
        duration_s = _number(command, "duration_s", 0.01, MAX_DURATION_S)
        in_flight = int(_number(command, "max_in_flight", 1, MAX_CONCURRENCY))
        recorder, elapsed_s = await open_loop(call, numbers, rate, duration_s, in_flight)
    elif mode == "count":
        calls = int(_number(command, "calls", 1, MAX_CALLS))
        concurrency = int(_number(command, "concurrency", 1, MAX_CONCURRENCY))
        recorder, elapsed_s = await counted(call, numbers, calls, concurrency)
    else:
        raise CommandError(f"mode: must be closed, open or count, not {mode!r}")
    return recorder.result(elapsed_s, time.process_time() - cpu_before)


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def run_on(loop: str, main: Awaitable[None]) -> None:
    """Runs ``main`` on uvloop's event loop (the nodes' own) or on asyncio's."""
    if loop not in LOOPS:
        raise ValueError(f"event loop {loop!r}: choose one of {', '.join(LOOPS)}")
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    else:
        asyncio.run(main)  # type: ignore[arg-type]


async def serve_commands(make_call: Callable[[dict[str, Any]], Call]) -> None:
    """Answers commands from stdin until ``stop`` or end of input.

    ``make_call`` turns a command into the call to load (a command may name its target);
    it raises CommandError for a target it cannot use.
    """
    loop = asyncio.get_running_loop()
    numbers = itertools.count()
    answer({"ready": True})
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise CommandError("a command is a JSON object")
            if command.get("stop"):
                return
            answer(await run_phase(make_call(command), numbers, command))
        except (CommandError, json.JSONDecodeError) as error:
            answer({"error": str(error)})


def side_by_side_arguments(
    doc: str | None, *, calls: int, concurrency: int, rounds: int = 2
) -> tuple[int, int, int]:
    """The command line of the scripts that measure two things in turn, in rounds
    (scripts/bench_rpc_cost.py, scripts/bench_commit_floor.py): calls per measurement,
    calls in flight, rounds; each at least 1."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--calls", type=int, default=calls, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=concurrency, help="calls in flight")
    parser.add_argument("--rounds", type=int, default=rounds, help="rounds of both measurements")
    args = parser.parse_args()
    if args.calls < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--calls, --concurrency and --rounds must be at least 1")
    return args.calls, args.concurrency, args.rounds
