"""The end-to-end flows again, with every node on PostgreSQL (issue 11).

The same test functions as the SQLite modules, collected here a second time: this module's
fixtures give them one network whose nodes each have their own database and role in the
session's PostgreSQL cluster. On PostgreSQL a node runs several database writers at once,
so the races (concurrent purchases against one credit limit, racing cancellations) meet
real concurrency that the row locks must serialise.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]
import pytest

from nodes.network.local import LocalNetwork
from nodes.network.postgres import SUPERUSER, throwaway_directory
from nodes.operator import network as network_file
from nodes.operator.reconcile import reconcile
from tests.e2e.purchase_support import PURCHASE_TOPOLOGY, database_url, start_purchase_network
from tests.e2e.test_cancellation import (
    test_cancel_after_billing_credits_it_back,
    test_cancel_before_billing_stops_the_billing,
    test_racing_cancellations_end_in_one_cancellation_and_one_credit,
)
from tests.e2e.test_marketplace import TOPOLOGY as MARKET_TOPOLOGY
from tests.e2e.test_marketplace import (
    sign_contracts,
    test_claim_6_purchaser_marketplace_bills_and_pays_out_the_amount_less_the_charge,
    test_claim_7_partner_bills_the_purchaser_and_is_billed_the_charge,
)
from tests.e2e.test_purchase import test_a_purchase_leaves_four_records_that_agree
from tests.e2e.test_purchase_refusals import (
    test_concurrent_purchases_never_exceed_one_credit_limit,
    test_over_the_credit_limit_is_refused_and_nothing_is_recorded,
)

# The purchase network plus the three marketplaces, approval shared.
TOPOLOGY = (*PURCHASE_TOPOLOGY, *(spec for spec in MARKET_TOPOLOGY if spec.role != "approval"))

COLLECTED = (
    test_a_purchase_leaves_four_records_that_agree,
    test_over_the_credit_limit_is_refused_and_nothing_is_recorded,
    test_concurrent_purchases_never_exceed_one_credit_limit,
    test_cancel_before_billing_stops_the_billing,
    test_cancel_after_billing_credits_it_back,
    test_racing_cancellations_end_in_one_cancellation_and_one_credit,
    test_claim_6_purchaser_marketplace_bills_and_pays_out_the_amount_less_the_charge,
    test_claim_7_partner_bills_the_purchaser_and_is_billed_the_charge,
)


@pytest.fixture(scope="module")
def postgresql_network(network_factory: Callable[..., LocalNetwork]) -> LocalNetwork:
    network = start_purchase_network(network_factory, TOPOLOGY, database="postgresql")
    sign_contracts(network)
    return network


@pytest.fixture(scope="module")
def purchase_network(postgresql_network: LocalNetwork) -> LocalNetwork:
    return postgresql_network


@pytest.fixture(scope="module")
def cancel_network(postgresql_network: LocalNetwork) -> LocalNetwork:
    return postgresql_network


@pytest.fixture(scope="module")
def markets(postgresql_network: LocalNetwork) -> LocalNetwork:
    return postgresql_network


def test_the_flows_on_postgresql_reconcile_clean(postgresql_network: LocalNetwork):
    """After the flows above (collected first), the network-wide invariants all hold."""
    report = asyncio.run(reconcile(network_file.load(postgresql_network.data_dir / "network.json")))
    assert report.orders_checked > 0
    assert report.mismatches == []


def test_every_node_has_its_own_postgresql_database_and_role(postgresql_network: LocalNetwork):
    """No SQLite file anywhere; each node connects as its own role to its own database."""
    urls = {}
    for node in postgresql_network.nodes:
        urls[node.spec.entity_id] = database_url(postgresql_network, node.spec.entity_id)
        assert not (node.directory / "node.db").exists()
    assert all(url.startswith("postgresql://") for url in urls.values())
    assert len(set(urls.values())) == len(postgresql_network.nodes) == len(TOPOLOGY)
    cluster = postgresql_network.postgres
    assert cluster is not None
    with cluster.cursor() as cursor:
        cursor.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE %s",
            (f"sn_{postgresql_network.database_prefix}%",),
        )
        owners = dict(cursor.fetchall())
    assert len(owners) == len(TOPOLOGY)
    assert all(database == owner for database, owner in owners.items())


def wait_for(path: Path, process: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    """Waits until ``up`` writes ``path``; fails at once if ``up`` exits first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s}s"
        time.sleep(0.2)


def run_up(data_dir: Path) -> subprocess.Popen[str]:
    (data_dir / "network.json").unlink(missing_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodes.cli",
            "up",
            "--data-dir",
            str(data_dir),
            "--database",
            "postgresql",
            "--standby",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_up(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_up_with_postgresql_runs_the_readme_purchase_and_keeps_it_across_restarts():
    """`suretynet up --database postgresql --standby` as the README runs it: its own
    cluster and synchronous standby under the data directory, a purchase from the member
    CLI, Ctrl-C stops both servers too, and a second `up` on the same directory finds the
    order still there."""
    directory = throwaway_directory()
    data_dir = directory / "sn"
    data_dir.mkdir()
    network = str(data_dir / "network.json")
    member = [sys.executable, "-m", "nodes.cli", "member", "--network", network]
    process = run_up(data_dir)
    try:
        wait_for(data_dir / "network.json", process)
        manifest = json.loads((data_dir / "network.json").read_text())
        assert {node["database"].split("@")[0] for node in manifest["nodes"]} == {
            f"postgresql://sn_{node['entity_id'].replace('-', '_')}" for node in manifest["nodes"]
        }
        subprocess.run(
            [
                *member,
                "login",
                "--agency",
                "agency-1",
                "--member-id",
                "alice",
                "--password",
                "alice-demo-password",
            ],
            check=True,
            capture_output=True,
        )
        issued = json.loads(
            subprocess.run(
                [*member, "anonymous-id", "--shop", "shop-1"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        bought = json.loads(
            subprocess.run(
                [
                    *member,
                    "buy",
                    "--shop",
                    "shop-1",
                    "--item",
                    "tea=2",
                    "--anonymous-id",
                    issued["anonymous_user_id"]["value"],
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert bought["status"] == "ORDER_STATUS_COMPLETED"
        url = tomllib.loads((data_dir / "agency-1" / "node.toml").read_text())["database_url"]
        assert url.count("127.0.0.1:") == 2 and url.endswith("?target_session_attrs=read-write")
        output = stop_up(process)
        assert "PostgreSQL   127.0.0.1:" in output
        assert "standby      127.0.0.1:" in output
        for server in ("postgres", "postgres-standby"):
            assert not (data_dir / server / "data" / "postmaster.pid").exists()

        process = run_up(data_dir)
        wait_for(data_dir / "network.json", process)
        cluster = json.loads((data_dir / "postgres" / "cluster.json").read_text())
        connection = psycopg2.connect(
            dbname="sn_agency_1",
            user=SUPERUSER,
            password=cluster["password"],
            host="127.0.0.1",
            port=cluster["port"],
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT amount_minor FROM settlement_order WHERE order_number = %s",
                    (bought["order_number"],),
                )
                assert cursor.fetchall() == [(2_400,)]
                cursor.execute("SELECT version, name FROM schema_migration")
                assert cursor.fetchall() == [(1, "initial")]
        finally:
            connection.close()
        stop_up(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
