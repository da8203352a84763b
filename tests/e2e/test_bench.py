"""`suretynet bench --quick`: its JSON's shape, counts that agree, and an honest history.

One tiny run (short phases, 30 past orders) of the command itself, as an operator runs it:
every node its own process, the member's client and the echo in processes of their own.
Timings are printed by the bench, never asserted here (a shared machine makes them noisy);
what is checked is that every figure is there, that the counts agree with each other, and
that the seeded history is what real purchases leave: reconcile clean, both audit chains
intact, and every node holding as many rows per past order, table by table, as per real
purchase.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodes.network.bench import CLIENT_METHOD, VARIANTS
from storage.common.audit_chain import GENESIS_HASH, entry_hash
from tests.support import require_postgresql

LEVELS = ("one_in_flight", "saturation", "half_load")
PERCENTILES = {"p50", "p95", "p99"}
NODES = {"institution", "verification", "agency-1", *(f"shop-{v}" for v in VARIANTS)}
HISTORY_ORDERS = 30


def run_bench(*options: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs ``suretynet bench --quick --json OPTIONS`` in a process group of its own, so
    that on a timeout the nodes and clients it started are killed with it."""
    argv = [sys.executable, "-m", "nodes.cli", "bench", "--quick", "--json", *options]
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the bench did not finish within {timeout_s}s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    kept = tmp_path_factory.mktemp("bench")
    result = run_bench(
        "--history",
        str(HISTORY_ORDERS),
        "--keep",
        str(kept),
        "--reconcile",
        "--profile",
        str(kept / "profiles"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # Not a terminal: one progress line per phase on stderr, nothing of it on stdout.
    assert "bench [" in result.stderr
    print(result.stderr)
    return json.loads(result.stdout), kept


def test_the_report_has_every_figure_the_issue_asks_for(bench):
    report, _ = bench
    for key in ("echo_calls_per_s", "purchases_per_s", "efficiency", "cpu_ms_per_purchase"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert set(report["latency_ms"]) == set(LEVELS)
    assert set(report["echo_latency_ms"]) == set(LEVELS)
    for figures in (*report["latency_ms"].values(), *report["echo_latency_ms"].values()):
        assert set(figures) >= PERCENTILES
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"]
    assert set(report["rss_mib"]) == NODES | {"client"}
    assert all(value > 0 for value in report["rss_mib"].values())
    assert len(report["load_average"]["start"]) == 3
    assert report["machine"]["cpus"] >= 1
    assert set(report["variants"]) == set(VARIANTS)
    assert set(report["targets"]) == {
        "efficiency",
        "cpu_ms_per_purchase",
        "history_cpu_growth",
        "p99_half_load_ms",
        "rss_mib",
    }
    for target in report["targets"].values():
        assert isinstance(target["pass"], bool)
    assert report["all_targets_pass"] == all(t["pass"] for t in report["targets"].values())


def test_rpcs_are_counted_by_the_nodes_and_agree_with_the_callers(bench):
    report, _ = bench
    assert (
        report["rpcs_per_purchase"]
        == report["variants"][report["headline_variant"]]["rpcs_per_purchase"]
    )
    for variant, figures in report["variants"].items():
        phases = [*figures["phases"]["search"], *figures["phases"]["history"].values()]
        for phase in phases:
            assert phase["purchases"] > 0 and phase["errors"] == {}, (variant, phase)
            by_method = phase["rpcs_by_method"]
            assert CLIENT_METHOD not in by_method
            assert phase["rpcs_per_purchase"] == pytest.approx(sum(by_method.values()), abs=0.01)
            # Every purchase is one PlaceOrder, and every RPC a node served, another made.
            assert phase["client_rpcs_per_purchase"] == pytest.approx(1.0, abs=0.01)
            assert phase["rpcs_called_per_purchase"] == pytest.approx(
                phase["rpcs_per_purchase"], abs=0.05
            )
            assert "/suretynet.approval.v1.TransactionService/VerifyTransaction" in by_method
            assert set(phase["cpu_ms_per_purchase"]) == {
                "institution",
                "verification",
                "agency-1",
                f"shop-{variant}",
            }
        # Directory discovery asks approval for the agency on every purchase; the others
        # route from the shop's cache.
        search = "/suretynet.approval.v1.DirectoryService/SearchSettlementAgencyIdentification"
        saturated = figures["phases"]["fresh"]["saturation"]
        assert (search in saturated["rpcs_by_method"]) == (variant == "directory")
        efficiency = (
            figures["purchases_per_s"] * figures["rpcs_per_purchase"] / figures["echo_calls_per_s"]
        )
        assert figures["efficiency"] == pytest.approx(efficiency, rel=0.01)


def test_the_seeded_history_is_clean_and_row_for_row_a_real_one(bench):
    report, kept = bench
    history = report["history"]
    assert history["orders"] == HISTORY_ORDERS
    assert sum(history["per_shop"].values()) == HISTORY_ORDERS
    assert report["reconcile"]["mismatches"] == []
    assert report["reconcile"]["orders_checked"] > HISTORY_ORDERS
    for variant in VARIANTS:
        shop = sqlite3.connect(kept / f"shop-{variant}" / "node.db")
        seeded = [
            row[0]
            for row in shop.execute(
                "SELECT order_number FROM shop_order WHERE request_id LIKE 'history-%' LIMIT 3"
            )
        ]
        real = [
            row[0]
            for row in shop.execute(
                "SELECT order_number FROM shop_order WHERE request_id NOT LIKE 'history-%' "
                "AND status = 'COMPLETED' LIMIT 3"
            )
        ]
        assert len(seeded) == len(real) == 3
        nodes = ("institution", "verification", "agency-1", f"shop-{variant}")
        for node in nodes:
            footprints = {
                number: _footprint(kept / node / "node.db", number) for number in seeded + real
            }
            expected = footprints[real[0]]
            assert expected, f"{node} holds no row of a real purchase"
            for number, footprint in footprints.items():
                assert footprint == expected, (node, number, footprint, expected)


def test_the_audit_chains_still_verify_over_the_seeded_history(bench):
    _, kept = bench
    for node in ("institution", "verification"):
        connection = sqlite3.connect(kept / node / "node.db")
        previous, count = GENESIS_HASH, 0
        for sequence, kind, subject, state, recorded_at, linked, hashed in connection.execute(
            "SELECT sequence, kind, subject, state_json, recorded_at, previous_hash, entry_hash "
            "FROM audit_chain_entry ORDER BY sequence"
        ):
            count += 1
            assert sequence == count and linked == previous, (node, sequence)
            assert hashed == entry_hash(sequence, kind, subject, state, recorded_at, linked)
            previous = hashed
        assert count > HISTORY_ORDERS
        head = connection.execute("SELECT sequence, entry_hash FROM audit_chain_head").fetchone()
        assert head == (count, previous), node


def _footprint(database: Path, order_number: str) -> dict[str, int]:
    """How many rows of each table mention the order number (in any column, blobs too)."""
    connection = sqlite3.connect(database)
    needle = order_number.encode()
    counts: dict[str, int] = {}
    tables = [
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
    ]
    for table in tables:
        found = 0
        for row in connection.execute(f'SELECT * FROM "{table}"'):
            if any(
                needle in (value if isinstance(value, bytes) else str(value).encode())
                for value in row
            ):
                found += 1
        if found:
            counts[table] = found
    return counts


def test_profile_records_every_node_of_each_variant_at_saturation(bench):
    report, kept = bench
    for variant, figures in report["variants"].items():
        nodes = ("institution", "verification", "agency-1", f"shop-{variant}")
        expected = {str(kept / "profiles" / f"{variant}-{node}.speedscope.json") for node in nodes}
        assert set(figures["profiles"]) == expected
        for path in expected:
            profile = json.loads(Path(path).read_text())
            # py-spy's speedscope file: one profile per thread that ran, with its frames.
            assert profile["profiles"] and profile["shared"]["frames"], path


def test_replicas_on_sqlite_are_refused_as_up_refuses_them():
    result = subprocess.run(
        [sys.executable, "-m", "nodes.cli", "bench", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--replicas 2 needs --database postgresql" in result.stderr


def test_on_postgresql_the_database_processes_are_measured_apart():
    """`--database postgresql`: the same run on a cluster of the bench's own, its
    processes' CPU reported beside the nodes', the history written there clean."""
    require_postgresql()
    result = run_bench(
        "--database", "postgresql", "--variant", "push", "--history", "10", "--reconcile"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["settings"]["database"] == "postgresql"
    assert report["reconcile"]["mismatches"] == []
    saturated = report["variants"]["push"]["phases"]["fresh"]["saturation"]
    assert saturated["purchases"] > 0
    assert saturated["database_cpu_ms_per_purchase"] > 0
