"""The benchmark scripts keep working: run with tiny sizes, they print their tables.

Only the output's shape is checked, never a figure: timings belong to the scripts' output,
not to assertions (a shared machine makes them noisy).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from nodes.network.bench_echo import Journal

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_flows_measures_every_call_against_the_echo():
    output = run("bench_flows.py", "--calls", "5")
    latency, _, throughput = output.partition("\nthroughput")
    rows = {line.split()[0] for line in latency.splitlines()[2:] if line.strip()}
    assert rows == {"echo", "directory", "enrol-change", "purchase"}
    assert {line.split()[0] for line in throughput.splitlines()[1:] if line.strip()} == {
        "echo",
        "purchase",
    }


def test_bench_event_loop_compares_executor_and_inline():
    output = run("bench_event_loop.py", "--requests", "20", "--concurrency", "4")
    assert "executor" in output and "inline" in output
    assert "loop lag p99, inline / executor" in output


def test_bench_observability_prices_each_instrument():
    output = run("bench_observability.py", "--calls", "20", "--rounds", "1")
    # Each row: a 28-character label, then CPU microseconds per call.
    rows = [line[:28].strip() for line in output.splitlines()[1:] if line.strip()]
    assert rows == [
        "call (plain)",
        "call (observed_call)",
        "server span + histogram",
        "server span, to a file",
    ]


def test_bench_rpc_cost_prices_a_read_rpc_beside_the_health_check():
    output = run("bench_rpc_cost.py", "--calls", "20", "--concurrency", "2", "--rounds", "1")
    rows = [line.split() for line in output.splitlines()[2:] if line.strip()]
    assert [row[1] for row in rows] == ["health", "get_report"]
    assert all(float(row[2]) >= 0 and float(row[3]) > 0 for row in rows)


def test_bench_commit_floor_prices_a_durable_commit_beside_the_echo():
    output = run("bench_commit_floor.py", "--calls", "20", "--concurrency", "2", "--rounds", "1")
    lines = output.splitlines()
    rows = [line.split() for line in lines[2:-1]]
    assert [row[1] for row in rows] == ["echo", "durable"]
    assert all(float(row[2]) >= 0 and float(row[3]) > 0 for row in rows)
    assert lines[-1].startswith("durable / echo calls/s: ")


def test_the_durable_echo_stores_every_request_before_it_answers(tmp_path: Path):
    """Each answered call is a committed row in a WAL database (the nodes' journal mode)."""

    async def answer_fifty() -> None:
        journal = Journal(tmp_path)
        await asyncio.gather(*(journal.store(bytes([number])) for number in range(50)))

    asyncio.run(answer_fifty())
    database = sqlite3.connect(tmp_path / "echo.db")
    try:
        bodies = {row[0] for row in database.execute("SELECT body FROM request")}
        assert bodies == {bytes([number]) for number in range(50)}
        assert database.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        database.close()
