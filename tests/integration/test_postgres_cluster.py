"""The PostgreSQL cluster the project starts itself: one database and role per node."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import grpc
import psycopg2  # type: ignore[import-untyped]
import pytest
from suretynet.approval.v1 import approval_pb2, approval_pb2_grpc
from suretynet.type.v1 import types_pb2

from nodes.network.postgres import (
    PostgresCluster,
    PostgresUnavailableError,
    database_name,
    ensure_installed,
    throwaway_directory,
)
from tests.support import Pki, node_config, refusal, running


def login(url: str, database: str | None = None) -> None:
    parts = urllib.parse.urlsplit(url)
    psycopg2.connect(
        dbname=database or parts.path.lstrip("/"),
        user=parts.username,
        password=parts.password,
        host=parts.hostname,
        port=parts.port,
    ).close()


def test_a_node_role_reaches_its_own_database_and_no_other(postgres_cluster: PostgresCluster):
    shop = postgres_cluster.create_database("sn_c1_shop_1")
    agency = postgres_cluster.create_database("sn_c1_agency_1")
    try:
        login(shop)
        login(agency)
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            login(shop, "sn_c1_agency_1")
    finally:
        postgres_cluster.drop_database("sn_c1_shop_1")
        postgres_cluster.drop_database("sn_c1_agency_1")


def test_creating_a_database_again_keeps_it_and_replaces_the_password(
    postgres_cluster: PostgresCluster,
):
    first = postgres_cluster.create_database("sn_c2_shop")
    try:
        psycopg2.connect(first).close()
        connection = psycopg2.connect(first)
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept (value integer)")
        connection.close()
        second = postgres_cluster.create_database("sn_c2_shop")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(first)
        connection = psycopg2.connect(second)
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM kept")
            assert cursor.fetchone() == (0,)
        connection.close()
    finally:
        postgres_cluster.drop_database("sn_c2_shop")


def test_names_are_checked_and_derived_from_entity_ids(postgres_cluster: PostgresCluster):
    assert database_name("shop-1") == "sn_shop_1"
    assert database_name("Market.One", "n7_") == "sn_n7_market_one"
    for bad in ("Shop", "a-b", "x; DROP DATABASE postgres", "", "a" * 64):
        with pytest.raises(ValueError, match="lower-case letters"):
            postgres_cluster.create_database(bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs from ours only as root")
def test_a_directory_the_server_user_cannot_reach_is_a_clear_error():
    ensure_installed()
    with tempfile.TemporaryDirectory() as private:  # 0700, owned by root
        with pytest.raises(PostgresUnavailableError, match="cannot reach"):
            PostgresCluster.start(Path(private) / "cluster")


def test_a_node_whose_database_is_down_answers_unavailable_and_the_retry_succeeds(
    ca: Pki, tmp_path: Path
):
    """Database down (a crash, a failover under way): the caller gets UNAVAILABLE with
    DATABASE_UNAVAILABLE, never INTERNAL, and the same request_id succeeds once it is back."""
    directory = throwaway_directory()
    cluster = PostgresCluster.start(directory / "cluster", durable=False)
    url = cluster.create_database("sn_institution")
    config = node_config(tmp_path, ca, "approval", "institution", database_url=url)
    request = approval_pb2.IssueProgramSerialRequest(
        request_id="serial-during-outage", role=types_pb2.ROLE_RETAIL
    )

    async def scenario() -> None:
        async with running(config) as approval, ca.channel(approval.runtime.address) as channel:
            stub = approval_pb2_grpc.ApprovalAdminServiceStub(channel)
            await asyncio.to_thread(cluster.kill)
            refused = await refusal(stub.IssueProgramSerial(request, timeout=15))
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "DATABASE_UNAVAILABLE",
            )
            await asyncio.to_thread(cluster.restart)
            first = await stub.IssueProgramSerial(request, timeout=15)
            again = await stub.IssueProgramSerial(request, timeout=15)
            assert first == again and first.program_serial.serial

    try:
        asyncio.run(scenario())
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_kill_that_did_not_stop_the_server_is_an_error():
    """A failed ``pg_ctl stop`` is raised, never ignored: a failover that promotes the
    standby beside a primary still running splits the cluster (its commits then wait for
    the synchronous standby forever). Here pg_ctl fails on a data directory that is not."""
    directory = throwaway_directory()
    try:
        cluster = PostgresCluster(directory, ensure_installed(), "127.0.0.1", 1, "unused")
        with pytest.raises(PostgresUnavailableError, match="pg_ctl stop failed"):
            cluster.kill()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
